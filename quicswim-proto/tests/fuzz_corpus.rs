//! Replays the fuzz targets' corpus (`fuzz-corpus/<target>/`, kept by the cargo-fuzz runs,
//! crash inputs included once fixed) and their seeds through the same bodies the targets
//! call (`quicswim_proto::fuzzing`), on stable, in every `cargo test`.
//!
//! `QUICSWIM_FUZZ_SEEDS_OUT=<dir> cargo test -p quicswim-proto --test fuzz_corpus` also
//! writes the seeds to `<dir>/<target>/`, to start a corpus from.
#![allow(clippy::disallowed_methods)] // an arbitrary epoch for the core target

use std::path::Path;
use std::time::Instant;

use quicswim_proto::fuzzing;
use quicswim_proto::protocol::codec::{decode_datagram, decode_stream};

fn run(target: &str, input: &[u8], epoch: Instant) {
    match target {
        "datagram" => fuzzing::datagram(input),
        "stream" => fuzzing::stream(input),
        "core" => fuzzing::core(input, epoch),
        other => panic!("no fuzz target {other}"),
    }
}

#[test]
fn every_corpus_input_runs_clean() {
    let epoch = Instant::now();
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz-corpus");
    let mut replayed = 0;
    for target in ["datagram", "stream", "core"] {
        let dir = root.join(target);
        let mut files: Vec<_> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .map(|f| f.expect("corpus entry").path())
            .collect();
        files.sort();
        assert!(!files.is_empty(), "{} holds no corpus", dir.display());
        for file in files {
            let input = std::fs::read(&file).expect("corpus file reads");
            // A failure names the input to reproduce it with the fuzz target.
            eprintln!("{target}: {}", file.display());
            run(target, &input, epoch);
            replayed += 1;
        }
    }
    assert!(replayed >= 3);
}

#[test]
fn seeds_are_well_formed_and_run_clean() {
    let epoch = Instant::now();
    let out = std::env::var_os("QUICSWIM_FUZZ_SEEDS_OUT");
    for (i, (target, input)) in fuzzing::seeds().into_iter().enumerate() {
        match target {
            "datagram" => assert!(decode_datagram(&input).is_ok(), "seed {i} decodes"),
            "stream" => assert!(decode_stream(&input).is_ok(), "seed {i} decodes"),
            _ => {}
        }
        run(target, &input, epoch);
        if let Some(out) = &out {
            let dir = Path::new(out).join(target);
            std::fs::create_dir_all(&dir).expect("seed directory");
            std::fs::write(dir.join(format!("seed-{i:02}")), &input).expect("seed written");
        }
    }
}
