//! The standard `process_*` metrics of this process, read at scrape time from /proc and the
//! process CPU clock, under the names and help texts the Go and Python clients use, so that
//! existing dashboards and alerts find them. Linux only: elsewhere they are left out.

use std::fmt;
use std::fs;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use rustix::time::{clock_gettime, ClockId};

/// Encodes the process families; a figure /proc does not give is left out rather than
/// failing the scrape.
#[derive(Debug)]
pub(super) struct ProcessCollector;

impl Collector for ProcessCollector {
    fn encode(&self, mut e: DescriptorEncoder) -> fmt::Result {
        // The same sum of user and system time over every thread as /proc/self/stat's utime
        // and stime, in nanoseconds rather than in clock ticks (10 ms).
        let cpu = clock_gettime(ClockId::ProcessCPUTime);
        ConstCounter::new(cpu.tv_sec as f64 + cpu.tv_nsec as f64 * 1e-9).encode(
            e.encode_descriptor(
                "process_cpu_seconds",
                "Total user and system CPU time spent in seconds.",
                None,
                MetricType::Counter,
            )?,
        )?;
        if let Some(stat) = fs::read_to_string("/proc/self/stat")
            .ok()
            .as_deref()
            .and_then(Stat::parse)
        {
            let page_size = u64::try_from(rustix::param::page_size()).unwrap_or(0);
            gauge(
                &mut e,
                "process_resident_memory_bytes",
                "Resident memory size in bytes.",
                stat.rss_pages.saturating_mul(page_size),
            )?;
            gauge(
                &mut e,
                "process_virtual_memory_bytes",
                "Virtual memory size in bytes.",
                stat.vsize_bytes,
            )?;
            if let Some(boot) = fs::read_to_string("/proc/stat")
                .ok()
                .as_deref()
                .and_then(boot_time)
            {
                let ticks = rustix::param::clock_ticks_per_second() as f64;
                ConstGauge::new(boot as f64 + stat.start_ticks as f64 / ticks).encode(
                    e.encode_descriptor(
                        "process_start_time_seconds",
                        "Start time of the process since unix epoch in seconds.",
                        None,
                        MetricType::Gauge,
                    )?,
                )?;
            }
        }
        // The directory's own descriptor is counted too, as the Go client counts it.
        if let Ok(fds) = fs::read_dir("/proc/self/fd") {
            let open = u64::try_from(fds.count()).unwrap_or(u64::MAX);
            gauge(
                &mut e,
                "process_open_fds",
                "Number of open file descriptors.",
                open,
            )?;
        }
        if let Some(max) = fs::read_to_string("/proc/self/limits")
            .ok()
            .as_deref()
            .and_then(max_open_files)
        {
            gauge(
                &mut e,
                "process_max_fds",
                "Maximum number of open file descriptors.",
                max,
            )?;
        }
        Ok(())
    }
}

fn gauge(e: &mut DescriptorEncoder, name: &str, help: &str, value: u64) -> fmt::Result {
    ConstGauge::new(value).encode(e.encode_descriptor(name, help, None, MetricType::Gauge)?)
}

/// The figures used from /proc/self/stat (proc_pid_stat(5)).
#[derive(Debug, PartialEq, Eq)]
struct Stat {
    /// starttime: clock ticks after boot.
    start_ticks: u64,
    /// vsize.
    vsize_bytes: u64,
    /// rss.
    rss_pages: u64,
}

impl Stat {
    fn parse(text: &str) -> Option<Stat> {
        // Field 2 is the command name in parentheses, which may hold spaces and parentheses
        // of its own; the fields after the last ')' start at field 3.
        let (_, rest) = text.rsplit_once(')')?;
        let fields: Vec<&str> = rest.split_ascii_whitespace().collect();
        let field = |n: usize| -> Option<u64> { fields.get(n - 3)?.parse().ok() };
        Some(Stat {
            start_ticks: field(22)?,
            vsize_bytes: field(23)?,
            rss_pages: field(24)?,
        })
    }
}

/// Boot time in seconds since the Unix epoch, from /proc/stat's `btime` line.
fn boot_time(proc_stat: &str) -> Option<u64> {
    proc_stat
        .lines()
        .find_map(|line| line.strip_prefix("btime "))?
        .trim()
        .parse()
        .ok()
}

/// The soft limit on open files from /proc/self/limits; `None` when it is `unlimited`.
fn max_open_files(limits: &str) -> Option<u64> {
    limits
        .lines()
        .find_map(|line| line.strip_prefix("Max open files"))?
        .split_ascii_whitespace()
        .next()?
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_are_counted_after_the_command_name() {
        let text = "4242 (a (b) c) S 1 4242 4242 0 -1 4194560 1200 0 0 0 \
                    150 25 0 0 20 0 9 0 8800 123456789 2048 18446744073709551615 \
                    1 1 0 0 0 0 0 4096 17989 0 0 0 17 1 0 0 0 0 0\n";
        assert_eq!(
            Stat::parse(text),
            Some(Stat {
                start_ticks: 8800,
                vsize_bytes: 123_456_789,
                rss_pages: 2048,
            })
        );
        assert_eq!(Stat::parse("4242 (cut) S 1 2"), None);
    }

    #[test]
    fn boot_time_is_the_btime_line() {
        let text = "cpu  1 2 3 4\nintr 5\nctxt 6\nbtime 1700000000\nprocesses 7\n";
        assert_eq!(boot_time(text), Some(1_700_000_000));
        assert_eq!(boot_time("cpu 1 2 3\n"), None);
    }

    #[test]
    fn max_fds_is_the_soft_limit() {
        let text = "Limit                     Soft Limit           Hard Limit           Units\n\
                    Max processes             63457                63457                processes\n\
                    Max open files            1024                 524288               files\n";
        assert_eq!(max_open_files(text), Some(1024));
        let unlimited =
            "Max open files            unlimited            unlimited            files\n";
        assert_eq!(max_open_files(unlimited), None);
    }
}
