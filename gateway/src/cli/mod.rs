//! The `portcullis` command line: `eval` and `check`.
//!
//! Exit status: 0 allowed (or the configuration is valid), 1 denied, 2 the
//! configuration or an input could not be used.

mod input;
mod render;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

use crate::admission::Pipeline;
use crate::config::Config;
use crate::policy::{Host, HostOptions, LoadError};

/// Exit status of a denial.
const DENIED: u8 = 1;
/// Exit status of an unusable configuration or input.
const ERROR: u8 = 2;

/// An admission gateway for Kubernetes and Docker.
#[derive(Debug, Parser)]
#[command(name = "portcullis", version, about)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Decide requests offline, as the gateway would.
    ///
    /// Each REQUEST is a file holding an AdmissionReview, a Kubernetes
    /// manifest in YAML or JSON (judged as a CREATE), or a Docker
    /// container-create body (recognised, or forced with --docker).
    Eval {
        /// Configuration file (default: the built-in baseline pod-security policy).
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// Read every REQUEST as a Docker `POST /containers/create` body.
        #[arg(long)]
        docker: bool,
        /// Output format.
        #[arg(long, short, value_enum, default_value_t = Output::Text)]
        output: Output,
        /// Request files.
        #[arg(required = true, value_name = "REQUEST")]
        requests: Vec<PathBuf>,
    },
    /// Load the configuration and check every policy's settings.
    Check {
        /// Configuration file (default: the built-in baseline pod-security policy).
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
}

/// How `eval` prints decisions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Output {
    /// For a person.
    Text,
    /// One JSON object per request, one per line.
    Json,
}

/// Sends logs to stderr; `PORTCULLIS_LOG` sets the filter (default `warn`).
pub fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("PORTCULLIS_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
}

/// Runs a command and returns the process exit status.
pub fn run(cli: Cli) -> ExitCode {
    let result = match cli.command {
        Command::Eval {
            config,
            docker,
            output,
            requests,
        } => eval(config.as_deref(), docker, output, &requests),
        Command::Check { config } => check(config.as_deref()),
    };
    match result {
        Ok(status) => ExitCode::from(status),
        Err(error) => {
            eprintln!("error: {}", render::error_chain(&*error));
            ExitCode::from(ERROR)
        }
    }
}

type Error = Box<dyn std::error::Error>;

fn load(config: Option<&Path>) -> Result<(Config, Pipeline), Error> {
    let config = match config {
        Some(path) => Config::from_file(path)?,
        None => Config::default_config(),
    };
    let chosen = config
        .cache_dir
        .clone()
        .or_else(|| env_path("PORTCULLIS_CACHE_DIR"));
    let host = match chosen {
        // A cache the operator chose must work.
        Some(dir) => Host::new(&HostOptions {
            cache_dir: Some(dir),
        })?,
        // The usual place is a convenience: without it, compile every time.
        None => match Host::new(&HostOptions {
            cache_dir: user_cache_dir(),
        }) {
            Err(LoadError::Cache(error)) => {
                tracing::warn!(
                    "running without a compilation cache: {}",
                    render::error_chain(&error)
                );
                Host::new(&HostOptions::default())?
            }
            host => host?,
        },
    };
    let pipeline = Pipeline::load(&config, &host)?;
    Ok((config, pipeline))
}

fn env_path(name: &str) -> Option<PathBuf> {
    std::env::var_os(name)
        .filter(|value| !value.is_empty())
        .map(PathBuf::from)
}

/// `$XDG_CACHE_HOME/portcullis`, else `~/.cache/portcullis`.
fn user_cache_dir() -> Option<PathBuf> {
    env_path("XDG_CACHE_HOME")
        .map(|dir| dir.join("portcullis"))
        .or_else(|| env_path("HOME").map(|home| home.join(".cache").join("portcullis")))
}

fn eval(
    config: Option<&Path>,
    docker: bool,
    output: Output,
    files: &[PathBuf],
) -> Result<u8, Error> {
    let (_, pipeline) = load(config)?;
    let mut status = 0;
    for file in files {
        let request = match input::read(file, docker) {
            Ok(request) => request,
            Err(error) => {
                eprintln!("error: {}: {}", file.display(), render::error_chain(&error));
                status = ERROR;
                continue;
            }
        };
        let decision = pipeline.evaluate(&request);
        if !decision.allowed && status == 0 {
            status = DENIED;
        }
        match output {
            Output::Text => print!("{}", render::text(file, &decision, files.len() > 1)),
            Output::Json => println!("{}", render::json(file, &decision)),
        }
    }
    Ok(status)
}

fn check(config: Option<&Path>) -> Result<u8, Error> {
    let (config, pipeline) = load(config)?;
    print!("{}", render::summary(&config, &pipeline));
    Ok(0)
}
