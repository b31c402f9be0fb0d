use clap::Parser;
use rampart::cli::{Cli, Command};

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve(_args) => {
            rampart::telemetry::init(cli.log_format, "info");
            anyhow::bail!("serve: not implemented yet")
        }
        Command::Policy(cmd) => {
            let out = rampart::policy::cli::run(&cmd);
            use std::io::Write as _;
            print!("{}", out.stdout);
            eprint!("{}", out.stderr);
            let _ = std::io::stdout().flush();
            std::process::exit(out.code)
        }
    }
}
