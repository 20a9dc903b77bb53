//! `natter-bench`: the command line around [`natter_bench::run`]. The JSON line goes to
//! standard output, the human summary to standard error.

use clap::Parser;
use natter_bench::Cli;
use std::io::Write;
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let mut rt = tokio::runtime::Builder::new_multi_thread();
    if let Some(n) = cli.threads {
        rt.worker_threads(n.max(1));
    }
    let rt = match rt.enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("natter-bench: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let outcome = rt.block_on(natter_bench::run(cli.workload));
    // Connection tasks still lingering (a server that never closed) must not hold us up.
    rt.shutdown_timeout(std::time::Duration::from_secs(2));
    match outcome {
        Ok(o) => {
            let line = o.json.to_string();
            println!("{line}");
            eprintln!("{}", o.summary);
            if let Some(path) = cli.json_out {
                let appended = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&path)
                    .and_then(|mut f| writeln!(f, "{line}"));
                if let Err(e) = appended {
                    eprintln!("natter-bench: cannot write {}: {e}", path.display());
                    return ExitCode::FAILURE;
                }
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("natter-bench: {e}");
            ExitCode::FAILURE
        }
    }
}
