//! Measures add-on provisioning and Postgres backup/restore on the local Docker engine with
//! the images `slipway stack:build` makes:
//!
//! ```sh
//! cargo run -p slipway-addons --example bench -- [ROUNDS] [ROWS]
//! ```
//!
//! It provisions and destroys ROUNDS (default 5) Postgres and Redis add-ons one after the
//! other, then fills a Postgres add-on with ROWS (default 500000, about 100 MB) rows, backs it
//! up and restores it. Everything it creates is removed at the end.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use slipway_addons::{AddonImages, AddonInstance, AddonKind, Provisioner};
use slipway_engine::{ContainerEngine, DockerEngine};
use slipway_types::{AppName, ContainerSpec, labels};

type Error = Box<dyn std::error::Error + Send + Sync>;

#[tokio::main]
async fn main() -> Result<(), Error> {
    let mut args = std::env::args().skip(1);
    let rounds: u32 = args.next().map_or(Ok(5), |a| a.parse())?;
    let rows: u64 = args.next().map_or(Ok(500_000), |a| a.parse())?;

    let engine = Arc::new(DockerEngine::connect().await?);
    let images = AddonImages::default();
    let provisioner = Provisioner::new(
        Arc::clone(&engine) as Arc<dyn ContainerEngine>,
        images.clone(),
    );
    let app: AppName = format!("bench-{:06x}", std::process::id()).parse()?;
    let network = format!("slipway-{app}");
    let labels = BTreeMap::from([
        (labels::APP.to_owned(), app.to_string()),
        (labels::INSTANCE.to_owned(), "addons-bench".to_owned()),
    ]);
    let addon = |kind, name: &str| {
        AddonInstance::new(kind, app.clone(), name, network.clone(), labels.clone())
    };

    let result = async {
        for kind in [AddonKind::Postgres, AddonKind::Redis] {
            let mut times = Vec::new();
            for round in 0..rounds {
                let instance = addon(kind, &format!("{kind}-{round}"));
                let started = Instant::now();
                let provisioned = provisioner.provision(&instance).await;
                times.push(started.elapsed());
                provisioner.destroy(&instance).await?;
                provisioned?;
            }
            println!("provision {kind}: {}", summary(&times));
        }

        let db = addon(AddonKind::Postgres, "big");
        provisioner.provision(&db).await?;
        let outcome = backup_and_restore(&engine, &provisioner, &images, &db, rows).await;
        provisioner.destroy(&db).await?;
        outcome
    }
    .await;
    engine.remove_network(&network).await?;
    result
}

async fn backup_and_restore(
    engine: &Arc<DockerEngine>,
    provisioner: &Provisioner,
    images: &AddonImages,
    db: &AddonInstance,
    rows: u64,
) -> Result<(), Error> {
    let fill = format!(
        "create table items (id bigint primary key, a text, b text); \
         insert into items select g, md5(random()::text), \
         md5(random()::text) || md5(random()::text) || md5(random()::text) || md5(random()::text) \
         from generate_series(1, {rows}) g; analyze items;"
    );
    let started = Instant::now();
    psql(engine, images, db, &fill).await?;
    let size: u64 = psql(
        engine,
        images,
        db,
        "select pg_database_size(current_database())",
    )
    .await?
    .trim()
    .parse()?;
    println!(
        "filled {rows} rows of random text in {:.1} s; database {:.1} MB",
        started.elapsed().as_secs_f64(),
        mb(size)
    );

    let dir = tempfile::tempdir()?;
    let dump = dir.path().join("big.dump");
    let started = Instant::now();
    let written = provisioner.backup(db, &dump).await?;
    let took = started.elapsed().as_secs_f64();
    println!(
        "backup: {took:.1} s, dump {:.1} MB, {:.1} MB/s of database",
        mb(written),
        mb(size) / took
    );

    let started = Instant::now();
    provisioner.restore(db, &dump).await?;
    let took = started.elapsed().as_secs_f64();
    println!(
        "restore: {took:.1} s, {:.1} MB/s of database",
        mb(size) / took
    );
    let count = psql(engine, images, db, "select count(*) from items").await?;
    if count.trim() != rows.to_string() {
        return Err(format!("restored {} rows, not {rows}", count.trim()).into());
    }
    Ok(())
}

/// Runs one SQL string with psql on the add-on's network and returns what it printed.
async fn psql(
    engine: &Arc<DockerEngine>,
    images: &AddonImages,
    db: &AddonInstance,
    sql: &str,
) -> Result<String, Error> {
    let spec = ContainerSpec {
        name: format!("{}-bench-psql", db.container_name),
        image: images.postgres.clone(),
        entrypoint: vec!["psql".to_owned()],
        cmd: ["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-c", sql]
            .map(str::to_owned)
            .to_vec(),
        env: BTreeMap::from([
            ("PGHOST".to_owned(), db.container_name.clone()),
            ("PGUSER".to_owned(), db.user.clone()),
            ("PGPASSWORD".to_owned(), db.password.clone()),
            ("PGDATABASE".to_owned(), db.database.clone()),
            ("PGSSLMODE".to_owned(), "require".to_owned()),
        ]),
        network: Some(db.network.clone()),
        ..ContainerSpec::default()
    };
    let id = engine.create_container(&spec).await?;
    let result = async {
        engine.start(&id).await?;
        let code = engine.wait(&id).await?;
        let mut output = String::new();
        let mut stream = engine.output(&id, None);
        while let Some(chunk) = futures_util::StreamExt::next(&mut stream).await {
            output.push_str(&String::from_utf8_lossy(&chunk?.bytes));
        }
        if code != 0 {
            return Err(format!("psql exited with {code}: {output}").into());
        }
        Ok::<_, Error>(output)
    }
    .await;
    engine.remove_container(&id).await?;
    result
}

fn summary(times: &[Duration]) -> String {
    let mut sorted = times.to_vec();
    sorted.sort();
    let seconds = |d: &Duration| format!("{:.2} s", d.as_secs_f64());
    format!(
        "min {}, median {}, max {} over {} rounds",
        sorted.first().map(seconds).unwrap_or_default(),
        sorted
            .get(sorted.len() / 2)
            .map(seconds)
            .unwrap_or_default(),
        sorted.last().map(seconds).unwrap_or_default(),
        sorted.len()
    )
}

fn mb(bytes: u64) -> f64 {
    bytes as f64 / 1_000_000.0
}
