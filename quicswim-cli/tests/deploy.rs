//! The container artefacts in deploy/, where docker is present: the compose file is valid,
//! and deploy/build-image.sh builds an image FROM scratch (no base image to pull) whose
//! binary starts. Without docker each test says it is skipped and passes.
//!
//! The image needs a statically linked binary; `common::docker` says where it comes from
//! (the lab test builds the same image the same way, so the static build happens once).
#![cfg(unix)]

mod common;

use std::process::Command;

use common::docker::{build_static_image, describe, docker_answers_or_skip, repo, run};

/// `docker compose` (the plugin) or else `docker-compose` (the standalone tool).
fn compose_command() -> Option<Command> {
    let works = |program: &str, args: &[&str]| {
        Command::new(program)
            .args(args)
            .arg("version")
            .output()
            .is_ok_and(|o| o.status.success())
    };
    if works("docker", &["compose"]) {
        let mut cmd = Command::new("docker");
        cmd.arg("compose");
        Some(cmd)
    } else if works("docker-compose", &[]) {
        Some(Command::new("docker-compose"))
    } else {
        None
    }
}

#[test]
fn compose_file_is_valid() {
    if !docker_answers_or_skip("compose_file_is_valid") {
        return;
    }
    let Some(mut compose) = compose_command() else {
        eprintln!("compose_file_is_valid: skipped: neither `docker compose` nor `docker-compose`");
        return;
    };
    let file = repo().join("deploy/docker-compose.yml");
    let out = run(compose.arg("-f").arg(&file).arg("config"));
    assert!(out.status.success(), "{}", describe(&out));
    let config = String::from_utf8_lossy(&out.stdout);
    for node in ["node1", "node2", "node3", "node4", "node5"] {
        assert!(config.contains(&format!("--name={node}")), "{config}");
    }
}

#[test]
fn static_image_builds_and_starts() {
    if !docker_answers_or_skip("static_image_builds_and_starts") {
        return;
    }
    let image = build_static_image(
        &format!("quicswim-deploy-test:{}", std::process::id()),
        "static_image_builds_and_starts",
    );

    let out = run(Command::new("docker").args([
        "run",
        "--rm",
        "--network",
        "none",
        &image.0,
        "--version",
    ]));
    assert!(out.status.success(), "{}", describe(&out));
    let version = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        version.trim(),
        format!("quicswim {}", env!("CARGO_PKG_VERSION"))
    );

    let out = run(Command::new("docker").args([
        "image",
        "inspect",
        "--format",
        "{{.Config.User}} {{json .Config.ExposedPorts}} {{json .Config.Entrypoint}}",
        &image.0,
    ]));
    assert!(out.status.success(), "{}", describe(&out));
    let config = String::from_utf8_lossy(&out.stdout);
    assert!(config.starts_with("65532:65532 "), "runs as root: {config}");
    assert!(config.contains("\"7946/udp\""), "{config}");
    assert!(config.contains("\"7947/tcp\""), "{config}");
    assert!(config.contains("[\"/usr/local/bin/quicswim\"]"), "{config}");
}
