//! Building the object store from configuration: a local directory by
//! default, or S3 (and S3-compatible servers), GCS or Azure.

use std::path::PathBuf;
use std::sync::Arc;

use object_store::ObjectStore;
use object_store::aws::AmazonS3Builder;
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
            let s3: Arc<dyn ObjectStore> = Arc::new(b.build()?);
            Ok(match prefix {
                Some(p) if !p.is_empty() => Arc::new(object_store::prefix::PrefixStore::new(
                    s3,
                    object_store::path::Path::from(p.as_str()),
                )),
                _ => s3,
            })
        }
    }
}
