//! Tracing set-up shared by the programs: human-readable by default, JSON on request.

use clap_free::LogFormat;

/// Log output format (`--log-format`).
pub mod clap_free {
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
    pub enum LogFormat {
        #[default]
        Human,
        Json,
    }

    impl std::str::FromStr for LogFormat {
        type Err = String;
        fn from_str(s: &str) -> Result<Self, Self::Err> {
            match s {
                "human" | "text" => Ok(Self::Human),
                "json" => Ok(Self::Json),
                other => Err(format!("unknown log format {other:?}; use human or json")),
            }
        }
    }
}

pub use clap_free::LogFormat as Format;

/// Installs the global subscriber. `RUST_LOG` overrides `default_filter`. Logs go to stderr.
pub fn init(format: LogFormat, default_filter: &str) {
    use tracing_subscriber::EnvFilter;
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Human => {
            let _ = builder.try_init();
        }
        LogFormat::Json => {
            let _ = builder.json().flatten_event(true).try_init();
        }
    }
}
