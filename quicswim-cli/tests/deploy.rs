//! The container artefacts in deploy/, where docker is present: the compose file is valid,
//! and deploy/build-image.sh builds an image FROM scratch (no base image to pull) whose
//! binary starts. Without docker each test says it is skipped and passes.
//!
//! The image needs a statically linked binary. The test binary's own `quicswim` is used when
//! it is static; otherwise build-image.sh builds one in `<target>/deploy-static`, a target
//! directory of its own (the outer `cargo test` holds the usual one), which costs a release
//! build of the whole dependency tree the first time.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Instant;

const BIN: &str = env!("CARGO_BIN_EXE_quicswim");

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the CLI crate sits in the workspace")
        .to_owned()
}

/// Whether a docker daemon answers; says why the test is skipped when not.
fn docker_answers(test: &str) -> bool {
    let answers = Command::new("docker")
        .args(["version", "--format", "{{.Server.Version}}"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !answers {
        eprintln!("{test}: skipped: no docker daemon answers `docker version`");
    }
    answers
}

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

fn describe(out: &Output) -> String {
    format!(
        "{}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn run(cmd: &mut Command) -> Output {
    cmd.output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"))
}

/// Whether `path` is an ELF file without a program interpreter (PT_INTERP): it starts in
/// an empty image with no loader and no libraries.
fn is_static_elf(path: &Path) -> bool {
    const PT_INTERP: u32 = 3;
    let Ok(elf) = std::fs::read(path) else {
        return false;
    };
    // 64-bit little-endian ELF only; anything else is built afresh.
    if elf.len() < 64 || &elf[..4] != b"\x7fELF" || elf[4] != 2 || elf[5] != 1 {
        return false;
    }
    let u16_at = |at: usize| u16::from_le_bytes([elf[at], elf[at + 1]]) as usize;
    let phoff = u64::from_le_bytes(elf[0x20..0x28].try_into().expect("8 bytes")) as usize;
    let (phentsize, phnum) = (u16_at(0x36), u16_at(0x38));
    (0..phnum).all(|i| {
        let at = phoff + i * phentsize;
        elf.get(at..at + 4)
            .is_some_and(|t| u32::from_le_bytes(t.try_into().expect("4 bytes")) != PT_INTERP)
    })
}

/// Removes the test's image however the test ends.
struct Image(String);

impl Drop for Image {
    fn drop(&mut self) {
        let _ = Command::new("docker")
            .args(["image", "rm", "--force", &self.0])
            .output();
    }
}

#[test]
fn compose_file_is_valid() {
    if !docker_answers("compose_file_is_valid") {
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
    if !docker_answers("static_image_builds_and_starts") {
        return;
    }
    let bin = Path::new(BIN);
    // <target>/<profile>/quicswim
    let target = bin
        .parent()
        .and_then(Path::parent)
        .expect("the binary sits in the target directory");
    let image = Image(format!("quicswim-deploy-test:{}", std::process::id()));
    let mut build = Command::new(repo().join("deploy/build-image.sh"));
    build.arg(&image.0);
    if is_static_elf(bin) {
        build.env("QUICSWIM_BIN", bin);
    } else {
        build.env("CARGO_TARGET_DIR", target.join("deploy-static"));
        if let Ok(cargo) = std::env::var("CARGO") {
            build.env("CARGO", cargo);
        }
    }
    let started = Instant::now();
    let out = run(&mut build);
    eprintln!(
        "static_image_builds_and_starts: build-image.sh took {:.1?}",
        started.elapsed()
    );
    assert!(out.status.success(), "{}", describe(&out));

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
