use clap::Parser;
use rampart::cli::{Cli, Command};

// mimalloc: the proxy allocates small, short-lived buffers per request; glibc malloc spent ~10%
// of a worker's CPU on them (perf, scripts/bench).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    if let Err(e) = run() {
        // Our error texts already carry their causes; print them once, without a backtrace.
        eprintln!("rampart: error: {e}");
        std::process::exit(1);
    }
}

fn run() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve(args) => {
            // The config's `log_level` applies from the start (RUST_LOG still wins).
            let level = rampart::config::load(&args.config)
                .map(|c| c.proxy.log_level)
                .unwrap_or_else(|_| "info".into());
            rampart::telemetry::init(cli.log_format, &level);
            rampart::serve::run(&args)?;
            Ok(())
        }
        Command::Policy(cmd) => {
            let out = rampart::policy::cli::run(&cmd);
            use std::io::Write as _;
            print!("{}", out.stdout);
            eprint!("{}", out.stderr);
            let _ = std::io::stdout().flush();
            std::process::exit(out.code)
        }
        Command::Verify(args) => {
            rampart::telemetry::init(cli.log_format, "info");
            Ok(rampart::verify::run(args)?)
        }
        Command::Controller(args) => {
            let level = if args.debug { "debug" } else { "info" };
            rampart::telemetry::init(cli.log_format, level);
            actix_rt::System::new().block_on(rampart::controller::run(*args))?;
            Ok(())
        }
        Command::GenSecrets(args) => {
            rampart::telemetry::init(cli.log_format, "info");
            actix_rt::System::new().block_on(rampart::controller::gen_secrets::run(args))?;
            Ok(())
        }
        Command::Render(args) => {
            rampart::telemetry::init(cli.log_format, "warn");
            std::process::exit(rampart::k8s::render::run(&args.into()))
        }
        Command::Convert(args) => std::process::exit(rampart::k8s::nginx_convert::run(&args)),
    }
}
