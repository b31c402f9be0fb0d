use clap::Parser;
use rampart::cli::{Cli, Command};

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve(args) => {
            rampart::telemetry::init(cli.log_format, "info");
            rampart::serve::run(&args)?;
            Ok(())
        }
        Command::Policy(cmd) => {
            let out = rampart::policy::cli::run(&cmd);
            print!("{}", out.stdout);
            eprint!("{}", out.stderr);
            std::process::exit(out.code)
        }
    }
}
