use clap::Parser;
use rampart::cli::{Cli, Command};

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve(_args) => {
            rampart::telemetry::init(cli.log_format, "info");
            anyhow::bail!("serve: not implemented yet")
        }
        Command::Policy(_cmd) => anyhow::bail!("policy: not implemented yet"),
        Command::Render(args) => {
            rampart::telemetry::init(cli.log_format, "warn");
            std::process::exit(rampart::k8s::render::run(&args.into()))
        }
    }
}
