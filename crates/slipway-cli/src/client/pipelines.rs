//! Pipelines and promotions: `/v1/pipelines…` and `/v1/apps/{app}/promote`.

use reqwest::Method;
use slipway_types::pipeline::{
    AddPipelineApp, CreatePipeline, PipelineInfo, PromoteRequest, PromoteResult,
};

use super::{CONFIG_TIMEOUT, Client, ClientError, DEFAULT_TIMEOUT};

impl Client {
    pub async fn list_pipelines(&self) -> Result<Vec<PipelineInfo>, ClientError> {
        self.call(Method::GET, &["v1", "pipelines"]).await
    }

    pub async fn get_pipeline(&self, name: &str) -> Result<PipelineInfo, ClientError> {
        self.call(Method::GET, &["v1", "pipelines", name]).await
    }

    pub async fn create_pipeline(&self, name: &str) -> Result<PipelineInfo, ClientError> {
        let body = CreatePipeline {
            name: name.to_owned(),
        };
        self.call_with(Method::POST, &["v1", "pipelines"], &body, DEFAULT_TIMEOUT)
            .await
    }

    pub async fn destroy_pipeline(&self, name: &str) -> Result<(), ClientError> {
        self.send(
            Method::DELETE,
            &["v1", "pipelines", name],
            None::<&()>,
            DEFAULT_TIMEOUT,
        )
        .await?;
        Ok(())
    }

    /// `stage` is sent as typed: the server says what is wrong with it.
    pub async fn add_pipeline_app(
        &self,
        pipeline: &str,
        app: &str,
        stage: &str,
    ) -> Result<PipelineInfo, ClientError> {
        let body = AddPipelineApp {
            app: app.to_owned(),
            stage: stage.to_owned(),
        };
        self.call_with(
            Method::POST,
            &["v1", "pipelines", pipeline, "apps"],
            &body,
            DEFAULT_TIMEOUT,
        )
        .await
    }

    pub async fn remove_pipeline_app(&self, pipeline: &str, app: &str) -> Result<(), ClientError> {
        self.send(
            Method::DELETE,
            &["v1", "pipelines", pipeline, "apps", app],
            None::<&()>,
            DEFAULT_TIMEOUT,
        )
        .await?;
        Ok(())
    }

    /// Answers once every target runs the promoted release, or with the first that failed:
    /// each target goes through its release phase and a rolling replacement.
    pub async fn promote(&self, app: &str, to: &[String]) -> Result<PromoteResult, ClientError> {
        let body = PromoteRequest { to: to.to_vec() };
        self.call_with(
            Method::POST,
            &["v1", "apps", app, "promote"],
            &body,
            CONFIG_TIMEOUT.saturating_mul(u32::try_from(to.len().max(1)).unwrap_or(u32::MAX)),
        )
        .await
    }
}
