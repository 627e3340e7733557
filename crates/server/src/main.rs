//! The miru binary: parses flags and config, then runs the all-in-one
//! server or a tool subcommand.

use clap::Parser;

// glibc malloc spent ~40% of ingest CPU in a profile (many small label
// strings per request); mimalloc's size-class free lists remove most of it.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;
use miru::{app, cli};

/// Stack of each thread of the server's runtime (see where it is set).
const QUERY_THREAD_STACK_BYTES: usize = 64 << 20;

/// How long an idle blocking thread of the server's runtime lives.
const BLOCKING_THREAD_KEEP_ALIVE: std::time::Duration = std::time::Duration::from_secs(2);

fn main() -> anyhow::Result<()> {
    disable_transparent_huge_pages();
    let cli = cli::Cli::parse();
    let cfg = cli.flags.resolve()?;
    match cli.command {
        Some(cli::Command::Config) => {
            print!("{}", cfg.to_yaml());
            Ok(())
        }
        Some(cli::Command::Loadgen(which)) => {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()?;
            match *which {
                cli::Loadgen::Metrics(args) => rt.block_on(miru::loadgen::run_metrics(args)),
                cli::Loadgen::Logs(args) => rt.block_on(miru::loadgen::run_logs(args)),
                cli::Loadgen::Traces(args) => rt.block_on(miru::loadgen::run_traces(args)),
            }
        }
        Some(cli::Command::Export(which)) => {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()?;
            match *which {
                cli::Export::Logs(args) => rt.block_on(miru::export::run_export_logs(args, &cfg)),
            }
        }
        None | Some(cli::Command::Serve) => {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .thread_name("miru")
                // Parsing, planning and evaluating a query recurse over its
                // syntax tree, up to `miru_promql::MAX_NESTING` (512) levels
                // deep. 2 MiB, the default, held ~2,000 levels of nested
                // calls in a release build but under 200 in a debug one (the
                // tests' build), 16 MiB under 250 nested subqueries there;
                // 64 MiB holds the limit in every shape tried. The stack is
                // reserved address space, resident only as deep as used.
                .thread_stack_size(QUERY_THREAD_STACK_BYTES)
                // Blocking threads (part writes, compactions, query
                // evaluation) keep the memory they freed in their mimalloc
                // heaps while they sit idle in the pool: after a 50k-series
                // backfill ~100 MiB of a 178 MiB RSS, given back only when
                // tokio retires them (10 s idle by default). Retiring them
                // after 2 s idle returns it sooner; queries that follow each
                // other closely (a dashboard's panels) still find warm ones.
                .thread_keep_alive(BLOCKING_THREAD_KEEP_ALIVE)
                .build()?;
            rt.block_on(app::run(cfg))
        }
    }
}

/// mimalloc asks for transparent huge pages on its arenas and gives freed
/// ranges back to the kernel after a delay; every later touch of such a
/// range faults in a fresh 2 MiB page that the kernel zeroes whole, even
/// when a few KiB of it are used. Ingesting 470 MB of logs made 20–29k
/// page faults with 40 % of the server's CPU in `clear_page_erms` (if most
/// were 2 MiB pages, up to ~40 GB zeroed: derived, not measured); with THP
/// off for the process the same run takes ~380k 4 KiB faults and the
/// system time drops from 6–8 s to 2.2–2.8 s (see docs/benchmarks.md).
fn disable_transparent_huge_pages() {
    #[cfg(target_os = "linux")]
    if let Err(e) = rustix::thread::disable_transparent_huge_pages(true) {
        eprintln!("miru: could not turn transparent huge pages off: {e}");
    }
}
