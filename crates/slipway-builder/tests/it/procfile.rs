use slipway_builder::launch_command;
use slipway_types::{ContainerSpec, ProcessType};

use crate::Fixture;

#[tokio::test]
async fn a_procfile_only_app_runs_as_pushed_without_slugignored_files() {
    Fixture::run("procfile", |fixture| async move {
        let (result, lines) = fixture
            .build(
                "1.0.0",
                &[
                    (
                        "Procfile",
                        "web: ./serve\nworker: echo \"working on $DYNO\"\n",
                    ),
                    (".slugignore", "# not needed at run time\n*.psd\n/docs/\n"),
                    ("serve", "#!/bin/sh\n"),
                    ("art/logo.psd", "pixels"),
                    ("docs/guide.md", "words"),
                    (
                        "keep/docs/readme.md",
                        "kept: only the root docs/ is ignored",
                    ),
                ],
            )
            .await;
        let result = result.unwrap_or_else(|error| panic!("{error}: {lines:#?}"));
        assert_eq!(result.buildpack, "procfile");
        assert_eq!(result.procfile.processes().len(), 2);
        assert!(lines.contains(&"-----> Procfile app detected".to_owned()));

        let worker = result
            .procfile
            .command(&"worker".parse::<ProcessType>().unwrap())
            .unwrap()
            .to_owned();
        let (code, output) = fixture
            .run_to_end(ContainerSpec {
                name: format!("{}-worker-1", fixture.app),
                image: fixture.image("1.0.0"),
                cmd: launch_command(&worker),
                env: [("DYNO".to_owned(), "worker.1".to_owned())].into(),
                ..ContainerSpec::default()
            })
            .await;
        assert_eq!((code, output.as_str()), (0, "working on worker.1\n"));

        let (code, output) = fixture
            .run_to_end(ContainerSpec {
                name: format!("{}-run-1", fixture.app),
                image: fixture.image("1.0.0"),
                cmd: launch_command("find . -type f | sort"),
                ..ContainerSpec::default()
            })
            .await;
        assert_eq!(code, 0, "{output}");
        assert_eq!(
            output,
            "./.slugignore\n./Procfile\n./keep/docs/readme.md\n./serve\n"
        );
    })
    .await;
}

#[tokio::test]
async fn a_requested_buildpack_wins_over_detection() {
    Fixture::run("chosen", |fixture| async move {
        let (result, lines) = fixture
            .build_with(
                "1.0.0",
                &[
                    ("requirements.txt", "six\n"),
                    ("Procfile", "web: python3 -m http.server $PORT\n"),
                ],
                &["procfile"],
            )
            .await;
        let result = result.unwrap_or_else(|error| panic!("{error}: {lines:#?}"));
        assert_eq!(result.buildpack, "procfile");
        assert!(!lines.iter().any(|line| line.contains("pip")), "{lines:#?}");
    })
    .await;
}
