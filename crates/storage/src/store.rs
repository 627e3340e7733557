//! Building the object store from configuration: a local directory by
//! default, or S3 (and S3-compatible servers), GCS or Azure. Only the local
//! directory and S3 (against a real S3-compatible server, moto) are tested
//! end to end here; GCS and Azure are covered by building from config.

use std::path::PathBuf;
use std::sync::Arc;

use object_store::ObjectStore;
use object_store::aws::AmazonS3Builder;
use object_store::azure::MicrosoftAzureBuilder;
use object_store::gcp::GoogleCloudStorageBuilder;
use object_store::local::LocalFileSystem;
use serde::{Deserialize, Serialize};

/// Where immutable parts live (the `storage.object_store` config section).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "backend", rename_all = "lowercase", deny_unknown_fields)]
pub enum ObjectStoreConfig {
    /// A directory on local disk (default: `<data-dir>/objects`).
    Filesystem { path: Option<PathBuf> },
    /// Amazon S3 or an S3-compatible server. Credentials may also come
    /// from the usual `AWS_*` environment variables.
    S3 {
        bucket: String,
        #[serde(default)]
        region: Option<String>,
        #[serde(default)]
        endpoint: Option<String>,
        #[serde(default)]
        access_key_id: Option<String>,
        #[serde(default)]
        secret_access_key: Option<String>,
        /// Allow plain HTTP endpoints (S3-compatible servers on a LAN).
        #[serde(default)]
        allow_http: bool,
        /// Path-style requests (`endpoint/bucket/key`), for MinIO-like servers.
        #[serde(default)]
        force_path_style: bool,
        #[serde(default)]
        prefix: Option<String>,
    },
    /// Google Cloud Storage. Credentials from `service_account_path` or the
    /// usual `GOOGLE_*` environment variables.
    Gcs {
        bucket: String,
        #[serde(default)]
        service_account_path: Option<PathBuf>,
        #[serde(default)]
        prefix: Option<String>,
    },
    /// Azure Blob Storage. Credentials from `access_key` or the usual
    /// `AZURE_*` environment variables; `use_emulator` targets Azurite.
    Azure {
        account: String,
        container: String,
        #[serde(default)]
        access_key: Option<String>,
        #[serde(default)]
        endpoint: Option<String>,
        #[serde(default)]
        allow_http: bool,
        #[serde(default)]
        use_emulator: bool,
        #[serde(default)]
        prefix: Option<String>,
    },
}

impl Default for ObjectStoreConfig {
    fn default() -> Self {
        ObjectStoreConfig::Filesystem { path: None }
    }
}

/// Builds the store; `data_dir` anchors the default local directory.
pub fn build_object_store(
    cfg: &ObjectStoreConfig,
    data_dir: &std::path::Path,
) -> Result<Arc<dyn ObjectStore>, object_store::Error> {
    match cfg {
        ObjectStoreConfig::Filesystem { path } => {
            let dir = path.clone().unwrap_or_else(|| data_dir.join("objects"));
            std::fs::create_dir_all(&dir).map_err(|e| object_store::Error::Generic {
                store: "filesystem",
                source: Box::new(e),
            })?;
            Ok(Arc::new(LocalFileSystem::new_with_prefix(dir)?))
        }
        ObjectStoreConfig::S3 {
            bucket,
            region,
            endpoint,
            access_key_id,
            secret_access_key,
            allow_http,
            force_path_style,
            prefix,
        } => {
            let mut b = AmazonS3Builder::from_env().with_bucket_name(bucket);
            if let Some(r) = region {
                b = b.with_region(r);
            }
            if let Some(e) = endpoint {
                b = b.with_endpoint(e);
            }
            if let Some(k) = access_key_id {
                b = b.with_access_key_id(k);
            }
            if let Some(s) = secret_access_key {
                b = b.with_secret_access_key(s);
            }
            b = b
                .with_allow_http(*allow_http)
                .with_virtual_hosted_style_request(!*force_path_style);
            Ok(with_prefix(Arc::new(b.build()?), prefix))
        }
        ObjectStoreConfig::Gcs {
            bucket,
            service_account_path,
            prefix,
        } => {
            let mut b = GoogleCloudStorageBuilder::from_env().with_bucket_name(bucket);
            if let Some(p) = service_account_path {
                b = b.with_service_account_path(p.display().to_string());
            }
            Ok(with_prefix(Arc::new(b.build()?), prefix))
        }
        ObjectStoreConfig::Azure {
            account,
            container,
            access_key,
            endpoint,
            allow_http,
            use_emulator,
            prefix,
        } => {
            let mut b = MicrosoftAzureBuilder::from_env()
                .with_account(account)
                .with_container_name(container)
                .with_allow_http(*allow_http)
                .with_use_emulator(*use_emulator);
            if let Some(k) = access_key {
                b = b.with_access_key(k);
            }
            if let Some(e) = endpoint {
                b = b.with_endpoint(e.clone());
            }
            Ok(with_prefix(Arc::new(b.build()?), prefix))
        }
    }
}

/// Keeps every key of miru under `prefix` when one is set, so a bucket
/// can be shared.
fn with_prefix(store: Arc<dyn ObjectStore>, prefix: &Option<String>) -> Arc<dyn ObjectStore> {
    match prefix {
        Some(p) if !p.is_empty() => Arc::new(object_store::prefix::PrefixStore::new(
            store,
            object_store::path::Path::from(p.as_str()),
        )),
        _ => store,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_backend_builds_from_config() {
        let dir = tempfile::tempdir().unwrap();
        let cfgs = [
            ObjectStoreConfig::default(),
            ObjectStoreConfig::S3 {
                bucket: "b".into(),
                region: Some("us-east-1".into()),
                endpoint: Some("http://127.0.0.1:9".into()),
                access_key_id: Some("k".into()),
                secret_access_key: Some("s".into()),
                allow_http: true,
                force_path_style: true,
                prefix: Some("miru".into()),
            },
            ObjectStoreConfig::Azure {
                account: "devstoreaccount1".into(),
                container: "c".into(),
                access_key: None,
                endpoint: None,
                allow_http: true,
                use_emulator: true,
                prefix: None,
            },
        ];
        for c in &cfgs {
            build_object_store(c, dir.path()).unwrap_or_else(|e| panic!("{c:?}: {e}"));
        }
        // GCS needs credentials to build; a missing key file is reported.
        let gcs = ObjectStoreConfig::Gcs {
            bucket: "b".into(),
            service_account_path: Some(dir.path().join("missing.json")),
            prefix: None,
        };
        assert!(build_object_store(&gcs, dir.path()).is_err());
    }
}
