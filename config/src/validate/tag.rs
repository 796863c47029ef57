//! Rules of the `[tag]` table.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

use super::Validator;
use crate::model_tag::{
    SRI_SHA384_PREFIX, TAG_CACHE_MAX_AGE_SECONDS_RANGE, TAG_STALE_WHILE_REVALIDATE_SECONDS_RANGE,
    Tag,
};

/// Length of a SHA-384 digest in bytes.
const SHA384_LEN: usize = 48;

impl Validator {
    pub(super) fn tag(&mut self, tag: &Tag) {
        if let Some(sri) = &tag.expected_sri
            && let Err(problem) = check_sri(sri)
        {
            self.err("tag.expected_sri", problem);
        }
        self.range(
            "tag.cache_max_age_seconds",
            tag.cache_max_age_seconds,
            TAG_CACHE_MAX_AGE_SECONDS_RANGE,
        );
        self.range(
            "tag.stale_while_revalidate_seconds",
            tag.stale_while_revalidate_seconds,
            TAG_STALE_WHILE_REVALIDATE_SECONDS_RANGE,
        );
    }
}

/// Checks that `sri` is one SHA-384 SRI value: `sha384-` and the standard
/// base64 (with padding) of 48 bytes.
pub(crate) fn check_sri(sri: &str) -> Result<(), String> {
    let shown: String = sri.chars().take(80).collect();
    let Some(b64) = sri.strip_prefix(SRI_SHA384_PREFIX) else {
        return Err(format!(
            "{shown:?} is not a SHA-384 SRI value; expected \"sha384-\" followed by base64 \
             (GET /admin/tag shows the value of the served tracker)"
        ));
    };
    match STANDARD.decode(b64) {
        Ok(digest) if digest.len() == SHA384_LEN => Ok(()),
        Ok(digest) => Err(format!(
            "{shown:?}: the base64 part decodes to {} bytes, a SHA-384 digest has {SHA384_LEN}",
            digest.len()
        )),
        Err(e) => Err(format!(
            "{shown:?}: the part after \"sha384-\" is not base64: {e}"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sri_values_are_checked() {
        let good = format!("sha384-{}", STANDARD.encode([7u8; 48]));
        assert_eq!(check_sri(&good), Ok(()));
        let short = format!("sha384-{}", STANDARD.encode([7u8; 32]));
        assert!(check_sri(&short).unwrap_err().contains("32 bytes"));
        let sha256 = format!("sha256-{}", STANDARD.encode([7u8; 32]));
        assert!(check_sri(&sha256).unwrap_err().contains("not a SHA-384"));
        assert!(
            check_sri("sha384-not base64!")
                .unwrap_err()
                .contains("not base64")
        );
    }

    #[test]
    fn ranges_and_values_are_reported_by_key() {
        let mut v = Validator::default();
        v.tag(&Tag {
            expected_sri: Some("md5-abc".into()),
            cache_max_age_seconds: 40_000_000,
            stale_while_revalidate_seconds: 0,
        });
        let keys: Vec<String> = v.errors.iter().map(|p| p.error.to_string()).collect();
        assert_eq!(keys.len(), 2, "{keys:?}");
        assert!(keys[0].starts_with("tag.expected_sri: "), "{keys:?}");
        assert!(
            keys[1].starts_with("tag.cache_max_age_seconds: "),
            "{keys:?}"
        );
    }
}
