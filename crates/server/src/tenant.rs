//! Which tenant a request belongs to: `X-Scope-OrgID`, validated as Mimir
//! validates it, or `anonymous` when multi-tenancy is off or the header is
//! optional and absent.

use miru_model::TenantId;

use crate::config::TenancyConfig;

pub const ORG_ID_HEADER: &str = "x-scope-orgid";

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TenantError {
    #[error("no org id: the X-Scope-OrgID header is required")]
    Missing,
    #[error("invalid X-Scope-OrgID: {0}")]
    Invalid(String),
    #[error("X-Scope-OrgID names several tenants ({0:?}); writes go to exactly one tenant")]
    Several(String),
}

/// Resolves the tenant of a write from the header value, if any.
pub fn write_tenant(cfg: &TenancyConfig, header: Option<&str>) -> Result<TenantId, TenantError> {
    if !cfg.multitenancy_enabled {
        return Ok(TenantId::anonymous());
    }
    match header.map(str::trim) {
        None | Some("") if cfg.require_tenant_header => Err(TenantError::Missing),
        None | Some("") => Ok(TenantId::anonymous()),
        Some(h) if h.contains('|') => Err(TenantError::Several(h.to_string())),
        Some(h) => TenantId::new(h).map_err(|e| TenantError::Invalid(e.to_string())),
    }
}

/// Resolves the tenants of a read: `a|b` federates several tenants.
pub fn read_tenants(
    cfg: &TenancyConfig,
    header: Option<&str>,
) -> Result<Vec<TenantId>, TenantError> {
    if !cfg.multitenancy_enabled {
        return Ok(vec![TenantId::anonymous()]);
    }
    match header.map(str::trim) {
        None | Some("") if cfg.require_tenant_header => Err(TenantError::Missing),
        None | Some("") => Ok(vec![TenantId::anonymous()]),
        Some(h) => {
            let mut v: Vec<TenantId> = h
                .split('|')
                .map(|t| TenantId::new(t.trim()).map_err(|e| TenantError::Invalid(e.to_string())))
                .collect::<Result<_, _>>()?;
            v.sort();
            v.dedup();
            Ok(v)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_rules() {
        let optional = TenancyConfig {
            multitenancy_enabled: true,
            require_tenant_header: false,
        };
        let required = TenancyConfig {
            require_tenant_header: true,
            ..optional.clone()
        };
        let off = TenancyConfig {
            multitenancy_enabled: false,
            require_tenant_header: true,
        };
        assert_eq!(write_tenant(&optional, None).unwrap().as_str(), "anonymous");
        assert_eq!(write_tenant(&optional, Some("t1")).unwrap().as_str(), "t1");
        assert_eq!(write_tenant(&required, None), Err(TenantError::Missing));
        assert_eq!(
            write_tenant(&off, Some("t1")).unwrap().as_str(),
            "anonymous"
        );
        assert!(matches!(
            write_tenant(&optional, Some("a|b")),
            Err(TenantError::Several(_))
        ));
        assert!(matches!(
            write_tenant(&optional, Some("a/b")),
            Err(TenantError::Invalid(_))
        ));
        assert_eq!(read_tenants(&optional, Some("b|a")).unwrap().len(), 2);
    }
}
