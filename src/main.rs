use clap::Parser;
use rampart::cli::{Cli, Command};

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve(_args) => {
            rampart::telemetry::init(cli.log_format, "info");
            anyhow::bail!("serve: not implemented yet")
        }
        Command::Controller(args) => {
            let level = if args.debug { "debug" } else { "info" };
            rampart::telemetry::init(cli.log_format, level);
            let publisher = rampart::actors::k8s_reconciler::Publisher::default()
                .on_routes(|r| tracing::info!(routes = r.len(), "routes published"))
                .on_certificates(|c| tracing::info!(certificates = c.len(), "certificates published"));
            actix_rt::System::new().block_on(rampart::controller::run(args, publisher))?;
            Ok(())
        }
        Command::Policy(_cmd) => anyhow::bail!("policy: not implemented yet"),
        Command::Render(args) => {
            rampart::telemetry::init(cli.log_format, "warn");
            std::process::exit(rampart::k8s::render::run(&args.into()))
        }
    }
}
