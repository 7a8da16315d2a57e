//! Image pulls for a task: resolve each container's image, fetch its layers
//! once into the host's layer cache, and hand back pinned layer directories.

use std::collections::HashMap;
use std::sync::Arc;

use berth_oci::cache::{CachedLayer, LayerCache};
use berth_oci::client::{ClientConfig, Credentials, RegistryClient};
use berth_oci::manifest::RunConfig;
use berth_oci::Reference;

/// One container's image, ready to mount.
pub struct PulledImage {
    /// The manifest digest.
    pub digest: String,
    /// Layer directories, base first, pinned in the cache while this lives.
    pub layers: Vec<CachedLayer>,
    /// The image's run configuration (ENTRYPOINT, CMD, ENV, ...).
    pub config: RunConfig,
}

/// Pulls images for tasks.
#[derive(Clone)]
pub struct Puller {
    client: RegistryClient,
    cache: LayerCache,
}

impl Puller {
    /// A puller over `cache`. `own_registry` (`host:port`) is the control
    /// plane's registry, reached with the agent's access key; other
    /// registries are reached anonymously (plain HTTP only on loopback or
    /// for `insecure`).
    pub fn new(
        cache: LayerCache,
        own_registry: &str,
        access_key_id: &str,
        secret: &str,
        insecure: Vec<String>,
    ) -> Result<Self, String> {
        let mut credentials = HashMap::new();
        credentials.insert(
            own_registry.to_string(),
            Credentials::Basic {
                username: access_key_id.to_string(),
                password: secret.to_string(),
            },
        );
        let client = RegistryClient::new(ClientConfig {
            credentials,
            insecure_registries: insecure,
            ..ClientConfig::default()
        })
        .map_err(|e| e.to_string())?;
        Ok(Self { client, cache })
    }

    /// Pulls `image`; the error text is what follows "CannotPullContainerError: ".
    pub async fn pull(&self, image: &str) -> Result<PulledImage, String> {
        let reference: Reference = image
            .parse()
            .map_err(|e: berth_oci::reference::ReferenceError| e.to_string())?;
        let resolved = self
            .client
            .resolve(&reference)
            .await
            .map_err(|e| format!("pull image manifest for {image}: {e}"))?;
        let mut layers = Vec::with_capacity(resolved.manifest.layers.len());
        for desc in &resolved.manifest.layers {
            let client = self.client.clone();
            let r = Arc::new(reference.clone());
            let d = desc.clone();
            let layer = self
                .cache
                .get_or_fetch(desc, move |dest| async move {
                    client
                        .fetch_blob(&r, &d, &dest)
                        .await
                        .map_err(|e| Box::new(e) as Box<dyn std::error::Error + Send + Sync>)
                })
                .await
                .map_err(|e| format!("pull layer {} of {image}: {e}", desc.digest))?;
            layers.push(layer);
        }
        Ok(PulledImage {
            digest: resolved.manifest_digest.to_string(),
            layers,
            config: resolved.config.config.unwrap_or_default(),
        })
    }
}
