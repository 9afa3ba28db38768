//! `quicswim scaling`: how steady cost grows with the cluster, from `quicswim bench --out`
//! runs of several sizes. Arguments and output only; the work is in `crate::bench::scaling`.

use std::path::PathBuf;

use crate::bench::scaling::{read_runs, write_scaling};

/// Arguments of `quicswim scaling`.
#[derive(clap::Args, Debug)]
pub struct ScalingArgs {
    /// Directories that `quicswim bench --out` wrote, one per cluster size.
    #[arg(required = true, num_args = 2..)]
    runs: Vec<PathBuf>,
    /// Where scaling.csv and the charts (CPU, bytes, packets per node per second against
    /// the cluster's size) go.
    #[arg(long)]
    out: PathBuf,
}

/// Reads the runs, writes the table and charts, and prints the table.
pub fn run(args: ScalingArgs) -> anyhow::Result<()> {
    let points = read_runs(&args.runs)?;
    let files = write_scaling(&args.out, &points)?;
    let mut rows = vec![[
        "nodes".to_string(),
        "CPU ms/node/s".to_string(),
        "bytes/node/s".to_string(),
        "packets/node/s".to_string(),
    ]];
    rows.extend(points.iter().map(|p| {
        [
            p.nodes.to_string(),
            format!("{:.3}", p.cpu_ms_per_node_s),
            format!("{:.0}", p.bytes_per_node_s),
            format!("{:.2}", p.packets_per_node_s),
        ]
    }));
    print!("{}", super::align(&rows));
    eprintln!("wrote {} files to {}", files.len(), args.out.display());
    Ok(())
}
