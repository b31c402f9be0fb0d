//! Command line interface (clap derive). Each subcommand's logic lives in its module;
//! this file only declares the arguments.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::telemetry::LogFormat;

#[derive(Debug, Parser)]
#[command(
    name = "rampart",
    version,
    about = "Identity-aware reverse proxy and Kubernetes Ingress controller"
)]
pub struct Cli {
    /// Log output format.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text, env = "RAMPART_LOG_FORMAT")]
    pub log_format: LogFormat,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the proxy from a Pomerium-style config file.
    Serve(ServeArgs),
    /// Run the Kubernetes Ingress controller (Pomerium ingress controller compatible).
    #[command(alias = "all-in-one")]
    Controller(Box<crate::controller::ControllerArgs>),
    /// Create the bootstrap Secret (`shared_secret`, `cookie_secret`, `signing_key`) for the
    /// `Pomerium` object unless it exists.
    GenSecrets(crate::controller::gen_secrets::GenSecretsArgs),
    /// Check, evaluate and explain Pomerium Policy Language documents.
    #[command(subcommand)]
    Policy(PolicyCommand),
    /// Convert Kubernetes manifests (Ingress, IngressClass, Service, Endpoints,
    /// EndpointSlice, Secret, Pomerium) into a Pomerium-style config on stdout.
    ///
    /// Rejected Ingresses are listed on stderr as `namespace/name: error` (exit 1);
    /// unreadable input exits 2. When the input holds no IngressClass, an IngressClass
    /// `pomerium` owned by `--name` is assumed, so a lone Ingress file renders.
    Render(RenderArgs),
    /// Rewrite ingress-nginx manifests (`nginx.ingress.kubernetes.io/*` annotations,
    /// oauth2-proxy auth) to `ingress.pomerium.io/*` annotations or to Gateway API HTTPRoutes
    /// with PolicyFilters, on stdout. What could not be converted is listed on stderr (exit 1
    /// unless `--allow-partial`).
    Convert(crate::k8s::nginx_convert::ConvertArgs),
    /// Run a small upstream app that shows request headers and verifies the identity JWT
    /// (`X-Pomerium-Jwt-Assertion`) against a JWKS URL, like Pomerium's verify service.
    Verify(VerifyArgs),
}

#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// Listen address.
    #[arg(long, default_value = "127.0.0.1:8000")]
    pub address: String,
    /// JWKS of the proxy, e.g. https://app.example.com/.well-known/pomerium/jwks.json.
    #[arg(long)]
    pub jwks_url: String,
    /// Expected `aud`; default: the request's X-Forwarded-Host or Host (without port).
    #[arg(long)]
    pub audience: Option<String>,
}

#[derive(Debug, Args)]
pub struct RenderArgs {
    /// Manifest file (multi-document YAML or JSON, `List` objects allowed; `-` for stdin).
    #[arg(short = 'f', long = "filename", required = true)]
    pub files: Vec<PathBuf>,
    /// Annotation prefix, without the `/`.
    #[arg(long, default_value = "ingress.pomerium.io")]
    pub prefix: String,
    /// IngressClass controller name this controller owns.
    #[arg(long, default_value = "pomerium.io/ingress-controller")]
    pub name: String,
    /// Comma-separated namespaces to manage (empty = all).
    #[arg(long, value_delimiter = ',')]
    pub namespaces: Vec<String>,
    /// Name of the `Pomerium` object to take global settings from (default: the first one).
    #[arg(long)]
    pub pomerium_config: Option<String>,
    /// GatewayClass `controllerName` treated as ours (Gateways whose class is not in the
    /// input are assumed to use it).
    #[arg(long, default_value = crate::k8s::gateway::DEFAULT_GATEWAY_CONTROLLER)]
    pub gateway_class_controller_name: String,
    /// Translate `nginx.ingress.kubernetes.io/*` annotations, as the controller flag does.
    #[arg(long)]
    pub ingress_nginx_compat: bool,
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Path to the config file (Pomerium config.yaml key names).
    #[arg(long, short = 'c', env = "RAMPART_CONFIG")]
    pub config: PathBuf,
    /// Directory for the embedded session store.
    #[arg(long, default_value = "./data", env = "RAMPART_DATA_DIR")]
    pub data_dir: PathBuf,
    /// Seconds to let in-flight requests finish after SIGTERM.
    #[arg(long, default_value_t = 30)]
    pub shutdown_grace_seconds: u64,
    /// Proxy worker threads (default: one per CPU core).
    #[arg(long, env = "RAMPART_WORKERS")]
    pub workers: Option<usize>,
}

#[derive(Debug, Subcommand)]
pub enum PolicyCommand {
    /// Parse and compile a policy; print `ok` or the errors (exit 2).
    Check {
        /// Policy file (YAML or JSON), `-` for stdin.
        file: PathBuf,
    },
    /// Evaluate a policy against a request/identity input; print one JSON line.
    Eval(PolicyEvalArgs),
    /// Like `eval`, but print a human-readable trace.
    Explain(PolicyEvalArgs),
}

#[derive(Debug, Args)]
#[command(group(
    clap::ArgGroup::new("source")
        .required(true)
        .args(["policy", "config", "manifests"])
))]
pub struct PolicyEvalArgs {
    /// Policy file (YAML or JSON), `-` for stdin.
    #[arg(long)]
    pub policy: Option<PathBuf>,
    /// Config file (as for `rampart serve`, `-` for stdin): evaluate the effective policy of one
    /// of its routes (legacy fields such as `allowed_users` plus `policy`), chosen with
    /// `--route`, `--path`, `--id`.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Kubernetes manifests (as for `rampart render`, repeatable, `-` for stdin): evaluate the
    /// effective policy of one of the routes they render to, chosen with `--ingress`, `--route`,
    /// `--path`, `--id`.
    #[arg(short = 'f', long = "filename")]
    pub manifests: Vec<PathBuf>,
    /// The route's `from` URL (`https://app.example.com`; the scheme may be left out).
    #[arg(long, conflicts_with = "policy")]
    pub route: Option<String>,
    /// The route's `path`, `prefix` or `regex`, when several routes share a `from`.
    #[arg(long, conflicts_with = "policy")]
    pub path: Option<String>,
    /// The route's `id` (in a config file, routes without one are `route-N`, N counted from 0
    /// in file order).
    #[arg(long, conflicts_with = "policy")]
    pub id: Option<String>,
    /// With `-f`: only the routes of this Ingress (`namespace/name`).
    #[arg(long, conflicts_with_all = ["policy", "config"])]
    pub ingress: Option<String>,
    /// With `-f`: annotation prefix, without the `/`.
    #[arg(long, default_value = "ingress.pomerium.io")]
    pub prefix: String,
    /// Input JSON file (request and identity), `-` for stdin.
    #[arg(long)]
    pub input: PathBuf,
}
