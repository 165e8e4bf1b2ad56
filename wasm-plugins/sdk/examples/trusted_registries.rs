//! The policy shown in the README: deny images from registries outside an
//! allow-list. Build it with
//! `cargo build --release -p portcullis-policy-sdk --example trusted-registries --target wasm32-wasip2`.

use portcullis_policy_sdk::{Policy, Request, Verdict, export_policy};

#[derive(serde::Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
struct Settings {
    allowed_registries: Vec<String>,
}

struct TrustedRegistries;

impl Policy for TrustedRegistries {
    type Settings = Settings;

    fn validate_settings(settings: &Settings) -> Result<(), String> {
        if settings.allowed_registries.is_empty() {
            return Err("allowed_registries must name at least one registry".into());
        }
        Ok(())
    }

    fn validate(request: &Request, settings: &Settings) -> Verdict {
        let untrusted: Vec<&str> = request
            .images
            .iter()
            .map(|image| image.reference.as_str())
            .filter(|image| {
                !settings
                    .allowed_registries
                    .iter()
                    .any(|registry| image.starts_with(registry.as_str()))
            })
            .collect();
        if untrusted.is_empty() {
            Verdict::allow()
        } else {
            Verdict::deny(format!(
                "images from untrusted registries: {}",
                untrusted.join(", ")
            ))
        }
    }
}

export_policy!(TrustedRegistries);
