//! The site's RSA key pair and the public keys of remote actors.
//!
//! Mastodon only understands RSA (`publicKeyPem` in the actor, RSASSA-PKCS1-v1_5 with SHA-256
//! in HTTP signatures), so that is the one kind of key relais has.

use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Component, Path, PathBuf};

use base64::Engine;
use rsa::pkcs1::{DecodeRsaPrivateKey, DecodeRsaPublicKey};
use rsa::pkcs8::{
    DecodePrivateKey, DecodePublicKey, EncodePrivateKey, EncodePublicKey, LineEnding,
};
use rsa::{Pkcs1v15Sign, RsaPrivateKey, RsaPublicKey};
use sha2::{Digest, Sha256};

/// Size of generated keys: what Mastodon generates for its own accounts.
pub const KEY_BITS: usize = 2048;

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("{path}: cannot read the private key: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: not an RSA private key in PEM (PKCS#8 or PKCS#1): {message}")]
    ParsePrivate { path: PathBuf, message: String },
    #[error("{path}: a key already exists there; refusing to overwrite it")]
    AlreadyExists { path: PathBuf },
    #[error("{path}: cannot write the private key: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot generate an RSA key: {0}")]
    Generate(rsa::Error),
    #[error("cannot encode the key as PEM: {0}")]
    Encode(String),
    #[error("cannot sign: {0}")]
    Sign(rsa::Error),
    #[error("not an RSA public key in PEM (SPKI or PKCS#1): {0}")]
    ParsePublic(String),
    #[error("{path}: cannot resolve the path: {source}")]
    Resolve {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "the private key {key} is inside {out_dir}, which is published; \
         move it (fediverse.key_path) out of the output, static, content and themes folders"
    )]
    InsideOutput { key: PathBuf, out_dir: PathBuf },
}

/// An RSA private key. `Debug` never prints key material.
#[derive(Clone)]
pub struct PrivateKey {
    key: RsaPrivateKey,
}

impl std::fmt::Debug for PrivateKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PrivateKey(..)")
    }
}

impl PrivateKey {
    /// A fresh RSA-2048 key from the operating system's random source.
    pub fn generate() -> Result<PrivateKey, KeyError> {
        let key =
            RsaPrivateKey::new(&mut rand::rngs::OsRng, KEY_BITS).map_err(KeyError::Generate)?;
        Ok(PrivateKey { key })
    }

    /// Parses PKCS#8 (`BEGIN PRIVATE KEY`) or PKCS#1 (`BEGIN RSA PRIVATE KEY`) PEM, so a key
    /// made by `openssl genrsa` of any age can be used. The error text never holds key material.
    pub fn from_pem(pem: &str) -> Result<PrivateKey, String> {
        let key = if pem.contains("-----BEGIN RSA PRIVATE KEY-----") {
            RsaPrivateKey::from_pkcs1_pem(pem).map_err(|e| e.to_string())?
        } else {
            RsaPrivateKey::from_pkcs8_pem(pem).map_err(|e| e.to_string())?
        };
        Ok(PrivateKey { key })
    }

    /// Reads the key file written by [`PrivateKey::save`] (or any PKCS#8/PKCS#1 PEM).
    pub fn load(path: &Path) -> Result<PrivateKey, KeyError> {
        let pem = std::fs::read_to_string(path).map_err(|source| KeyError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        PrivateKey::from_pem(&pem).map_err(|message| KeyError::ParsePrivate {
            path: path.to_path_buf(),
            message,
        })
    }

    /// Writes the key as PKCS#8 PEM, readable by its owner only (mode 0600 on unix).
    /// An existing file is kept unless `overwrite` is set; it is then replaced atomically.
    pub fn save(&self, path: &Path, overwrite: bool) -> Result<(), KeyError> {
        let write_error = |source| KeyError::Write {
            path: path.to_path_buf(),
            source,
        };
        let pem = self
            .key
            .to_pkcs8_pem(LineEnding::LF)
            .map_err(|e| KeyError::Encode(e.to_string()))?;
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(write_error)?;
        }
        if !overwrite {
            return match write_new_private_file(path, pem.as_bytes()) {
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    Err(KeyError::AlreadyExists {
                        path: path.to_path_buf(),
                    })
                }
                other => other.map_err(write_error),
            };
        }
        // Written beside the target then renamed, so a crash never leaves a truncated key and
        // the new file is created with the restrictive mode instead of inheriting the old one.
        let mut temporary = path.as_os_str().to_owned();
        temporary.push(".tmp");
        let temporary = PathBuf::from(temporary);
        match std::fs::remove_file(&temporary) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(write_error(e)),
            _ => {}
        }
        write_new_private_file(&temporary, pem.as_bytes()).map_err(write_error)?;
        std::fs::rename(&temporary, path).map_err(write_error)
    }

    pub fn public_key(&self) -> RsaPublicKey {
        self.key.to_public_key()
    }

    /// SPKI PEM (`BEGIN PUBLIC KEY`): the `publicKeyPem` of the actor document.
    pub fn public_key_pem(&self) -> Result<String, KeyError> {
        public_key_to_pem(&self.public_key())
    }

    /// RSASSA-PKCS1-v1_5 over SHA-256 of `message`: what `rsa-sha256` and Mastodon's
    /// `hs2019` mean.
    pub fn sign_sha256(&self, message: &[u8]) -> Result<Vec<u8>, KeyError> {
        let hashed = Sha256::digest(message);
        self.key
            .sign(Pkcs1v15Sign::new::<Sha256>(), &hashed)
            .map_err(KeyError::Sign)
    }
}

/// Creates `path` exclusively, owner-only on unix, and writes `contents` to disk.
fn write_new_private_file(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    let mut options = OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path)?;
    file.write_all(contents)?;
    file.sync_all()
}

/// Checks an RSASSA-PKCS1-v1_5 SHA-256 signature of `message`.
pub fn verify_sha256(key: &RsaPublicKey, message: &[u8], signature: &[u8]) -> bool {
    let hashed = Sha256::digest(message);
    key.verify(Pkcs1v15Sign::new::<Sha256>(), &hashed, signature)
        .is_ok()
}

/// SPKI PEM of a public key, with a final newline as Mastodon writes it.
pub fn public_key_to_pem(key: &RsaPublicKey) -> Result<String, KeyError> {
    key.to_public_key_pem(LineEnding::LF)
        .map_err(|e| KeyError::Encode(e.to_string()))
}

/// Parses a remote actor's `publicKeyPem`: SPKI (`BEGIN PUBLIC KEY`) or PKCS#1
/// (`BEGIN RSA PUBLIC KEY`), as Mastodon accepts both.
///
/// The PEM armour is read leniently (any line length, CRLF, surrounding text) because peers
/// emit all of these; the DER inside is then decoded strictly.
pub fn parse_public_key_pem(pem: &str) -> Result<RsaPublicKey, KeyError> {
    let (label, der) = decode_pem(pem).map_err(KeyError::ParsePublic)?;
    match label {
        "PUBLIC KEY" => RsaPublicKey::from_public_key_der(&der)
            .map_err(|e| KeyError::ParsePublic(e.to_string())),
        "RSA PUBLIC KEY" => {
            RsaPublicKey::from_pkcs1_der(&der).map_err(|e| KeyError::ParsePublic(e.to_string()))
        }
        other => Err(KeyError::ParsePublic(format!(
            "unexpected PEM label {other:?}"
        ))),
    }
}

/// The label and decoded body of the first PEM block in `text`.
fn decode_pem(text: &str) -> Result<(&str, Vec<u8>), String> {
    const BEGIN: &str = "-----BEGIN ";
    const DASHES: &str = "-----";
    let start = text.find(BEGIN).ok_or("no -----BEGIN line")? + BEGIN.len();
    let label_len = text[start..]
        .find(DASHES)
        .ok_or("unterminated -----BEGIN line")?;
    let label = &text[start..start + label_len];
    let body_start = start + label_len + DASHES.len();
    let end_marker = format!("-----END {label}-----");
    let body_len = text[body_start..]
        .find(&end_marker)
        .ok_or_else(|| format!("no {end_marker} line"))?;
    let body: String = text[body_start..body_start + body_len]
        .chars()
        .filter(|c| !c.is_ascii_whitespace())
        .collect();
    let der = base64::engine::general_purpose::STANDARD
        .decode(body)
        .map_err(|e| format!("PEM body is not base64: {e}"))?;
    Ok((label, der))
}

/// Refuses a key path inside the output folder, where the build would publish it.
/// Both paths may not exist yet; symlinks in their existing parts are resolved.
pub fn ensure_outside(key_path: &Path, out_dir: &Path) -> Result<(), KeyError> {
    let key = resolve(key_path)?;
    let out = resolve(out_dir)?;
    if key.starts_with(&out) {
        return Err(KeyError::InsideOutput {
            key: key_path.to_path_buf(),
            out_dir: out_dir.to_path_buf(),
        });
    }
    Ok(())
}

/// Absolute form of `path`: its longest existing ancestor canonicalized, the rest appended
/// with `.` and `..` applied lexically.
fn resolve(path: &Path) -> Result<PathBuf, KeyError> {
    let resolve_error = |source| KeyError::Resolve {
        path: path.to_path_buf(),
        source,
    };
    let absolute = std::path::absolute(path).map_err(resolve_error)?;
    let mut normal = PathBuf::new();
    for component in absolute.components() {
        match component {
            Component::CurDir => {}
            Component::ParentDir => {
                normal.pop();
            }
            other => normal.push(other),
        }
    }
    let mut existing = normal.as_path();
    let mut rest = Vec::new();
    loop {
        match existing.canonicalize() {
            Ok(mut resolved) => {
                resolved.extend(rest.iter().rev());
                return Ok(resolved);
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                match (existing.parent(), existing.file_name()) {
                    (Some(parent), Some(name)) => {
                        rest.push(name.to_os_string());
                        existing = parent;
                    }
                    _ => return Ok(normal),
                }
            }
            Err(e) => return Err(resolve_error(e)),
        }
    }
}

/// The published test key of draft-cavage-http-signatures-12 Appendix C (1024 bits despite
/// the draft's prose), shared by the signature tests.
#[cfg(test)]
pub(crate) mod test_keys {
    /// The draft-cavage-http-signatures-12 Appendix C key, in PKCS#1 form.
    pub const CAVAGE_PRIVATE_PEM: &str = "-----BEGIN RSA PRIVATE KEY-----
MIICXgIBAAKBgQDCFENGw33yGihy92pDjZQhl0C36rPJj+CvfSC8+q28hxA161QF
NUd13wuCTUcq0Qd2qsBe/2hFyc2DCJJg0h1L78+6Z4UMR7EOcpfdUE9Hf3m/hs+F
UR45uBJeDK1HSFHD8bHKD6kv8FPGfJTotc+2xjJwoYi+1hqp1fIekaxsyQIDAQAB
AoGBAJR8ZkCUvx5kzv+utdl7T5MnordT1TvoXXJGXK7ZZ+UuvMNUCdN2QPc4sBiA
QWvLw1cSKt5DsKZ8UETpYPy8pPYnnDEz2dDYiaew9+xEpubyeW2oH4Zx71wqBtOK
kqwrXa/pzdpiucRRjk6vE6YY7EBBs/g7uanVpGibOVAEsqH1AkEA7DkjVH28WDUg
f1nqvfn2Kj6CT7nIcE3jGJsZZ7zlZmBmHFDONMLUrXR/Zm3pR5m0tCmBqa5RK95u
412jt1dPIwJBANJT3v8pnkth48bQo/fKel6uEYyboRtA5/uHuHkZ6FQF7OUkGogc
mSJluOdc5t6hI1VsLn0QZEjQZMEOWr+wKSMCQQCC4kXJEsHAve77oP6HtG/IiEn7
kpyUXRNvFsDE0czpJJBvL/aRFUJxuRK91jhjC68sA7NsKMGg5OXb5I5Jj36xAkEA
gIT7aFOYBFwGgQAQkWNKLvySgKbAZRTeLBacpHMuQdl1DfdntvAyqpAZ0lY0RKmW
G6aFKaqQfOXKCyWoUiVknQJAXrlgySFci/2ueKlIE1QqIiLSZ8V8OlpFLRnb1pzI
7U1yQXnTAEFYM560yJlzUpOb1V4cScGd365tiSMvxLOvTA==
-----END RSA PRIVATE KEY-----
";

    /// An unrelated key, for "signed by someone else" cases.
    pub const OTHER_PRIVATE_PEM: &str = "-----BEGIN RSA PRIVATE KEY-----
MIICXAIBAAKBgQCqqKx4zHoV54X5tFbiEgjDaBR+649yKTOtY3yweHTxXTV37OAy
dQqGf03LXtfYp9CBq9qnH9HIr8UgU4B4Aa9drc0ivsXokvTynoL3Sxaiz02R+i6s
8NTvKKZFkmGcYP9tjoArta5EbuaWj9PuVg6YrhO1SZ1iTiM23jXt4FOLhwIDAQAB
AoGAUIgUC1UCb3+3myPctAWqmPtuYI4sPMTwm+uMlYHiPVustZDUIztT4jAEt+lj
ldtq6yX7ok3Dox4+uYht4TN6WscNUcA1sq8657bVqfr3tcg0GDYN0+QYGJfkY0xn
DiEGOnNW9juei8zfO8ReXFZFrIYs32Tsne06N9Xgpoy77bECQQDaCvWzJEZsmX93
HBc4kul8yF5b8mKxSem0PYyHzSe2jFESwFzIh8TkWKpTi2UbhFwL9kWs4t2g9Tc7
TeETeN+bAkEAyF4Oq3KXZcTNWesU+pxaPnS1cj8wDs2m8ElweKwLCkVSm33Fd+FZ
nfcx422ZKqFCWKEjxcDeXBbDH+oEPvwghQJAc9SEp7DqlICKnTzX/R7WWIqczd2a
njH0q+JSiEXtBeXOn9Z+s6ykZOXRPeZ8RLzwpQ4j/27Za8s4lxGNMunwZwJAWl8J
8Mw7etw73p2IFcyla1wKZqAXVeXtsJz/DH5UcGp56sXcZciPOg8/QhuxpKedHAp5
7vyhjhl6Io/TIHFpXQJBAKQe9RSaptA5jLDwMUFGCNnP9BH4pEQoAOTQNUCFGJ5I
CXolEsAZ/4ojE25OyOxL0ARjMJk8Rox6AF5J1GJJdvs=
-----END RSA PRIVATE KEY-----
";

    /// Its public half as published in the draft, SPKI.
    pub const CAVAGE_PUBLIC_PEM: &str = "-----BEGIN PUBLIC KEY-----
MIGfMA0GCSqGSIb3DQEBAQUAA4GNADCBiQKBgQDCFENGw33yGihy92pDjZQhl0C3
6rPJj+CvfSC8+q28hxA161QFNUd13wuCTUcq0Qd2qsBe/2hFyc2DCJJg0h1L78+6
Z4UMR7EOcpfdUE9Hf3m/hs+FUR45uBJeDK1HSFHD8bHKD6kv8FPGfJTotc+2xjJw
oYi+1hqp1fIekaxsyQIDAQAB
-----END PUBLIC KEY-----
";
}

#[cfg(test)]
mod tests {
    use super::test_keys::{CAVAGE_PRIVATE_PEM, CAVAGE_PUBLIC_PEM};
    use super::*;

    fn cavage() -> PrivateKey {
        PrivateKey::from_pem(CAVAGE_PRIVATE_PEM).unwrap()
    }

    #[test]
    fn generated_key_is_2048_bits_and_round_trips_through_its_file() {
        use rsa::traits::PublicKeyParts;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys/site.pem");
        let key = PrivateKey::generate().unwrap();
        assert_eq!(key.public_key().size() * 8, KEY_BITS);
        key.save(&path, false).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.starts_with("-----BEGIN PRIVATE KEY-----\n"), "{text}");
        let loaded = PrivateKey::load(&path).unwrap();
        assert_eq!(loaded.public_key(), key.public_key());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }

    #[test]
    fn save_refuses_to_replace_a_key_unless_asked() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("key.pem");
        std::fs::write(&path, "precious").unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        }
        let err = cavage().save(&path, false).unwrap_err();
        assert!(matches!(err, KeyError::AlreadyExists { .. }), "{err}");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "precious");

        cavage().save(&path, true).unwrap();
        assert_eq!(
            PrivateKey::load(&path).unwrap().public_key(),
            cavage().public_key()
        );
        assert!(!dir.path().join("key.pem.tmp").exists());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }

    #[test]
    fn load_errors_name_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nope.pem");
        let err = PrivateKey::load(&missing).unwrap_err();
        assert!(matches!(err, KeyError::Read { .. }));
        assert!(err.to_string().contains("nope.pem"), "{err}");

        let garbage = dir.path().join("garbage.pem");
        std::fs::write(
            &garbage,
            "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
        )
        .unwrap();
        let err = PrivateKey::load(&garbage).unwrap_err();
        assert!(matches!(err, KeyError::ParsePrivate { .. }));
        assert!(err.to_string().contains("garbage.pem"), "{err}");
    }

    #[test]
    fn debug_output_hides_the_key() {
        assert_eq!(format!("{:?}", cavage()), "PrivateKey(..)");
    }

    #[test]
    fn public_pem_is_spki_and_matches_the_published_one() {
        let pem = cavage().public_key_pem().unwrap();
        assert!(pem.starts_with("-----BEGIN PUBLIC KEY-----\n"));
        assert!(pem.ends_with("-----END PUBLIC KEY-----\n"));
        assert_eq!(pem, CAVAGE_PUBLIC_PEM);
    }

    #[test]
    fn remote_keys_parse_as_spki_pkcs1_and_sloppy_armour() {
        let expected = cavage().public_key();
        assert_eq!(parse_public_key_pem(CAVAGE_PUBLIC_PEM).unwrap(), expected);

        let pkcs1 = {
            use rsa::pkcs1::EncodeRsaPublicKey;
            expected.to_pkcs1_pem(LineEnding::LF).unwrap()
        };
        assert!(pkcs1.starts_with("-----BEGIN RSA PUBLIC KEY-----"));
        assert_eq!(parse_public_key_pem(&pkcs1).unwrap(), expected);

        // One long base64 line, CRLF endings and surrounding whitespace.
        let body: String = CAVAGE_PUBLIC_PEM
            .lines()
            .filter(|l| !l.starts_with("-----"))
            .collect();
        let sloppy =
            format!("\r\n -----BEGIN PUBLIC KEY-----\r\n{body}\r\n-----END PUBLIC KEY-----");
        assert_eq!(parse_public_key_pem(&sloppy).unwrap(), expected);
    }

    #[test]
    fn remote_key_garbage_is_an_error() {
        for text in [
            "",
            "hello",
            "-----BEGIN PUBLIC KEY-----\nnot base64!\n-----END PUBLIC KEY-----",
            "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----",
            "-----BEGIN PUBLIC KEY-----\nAAAA\n",
            "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----",
            "-----BEGIN ",
        ] {
            assert!(
                matches!(parse_public_key_pem(text), Err(KeyError::ParsePublic(_))),
                "{text:?}"
            );
        }
    }

    #[test]
    fn signatures_verify_only_for_the_signed_message() {
        let key = cavage();
        let signature = key.sign_sha256(b"message").unwrap();
        assert!(verify_sha256(&key.public_key(), b"message", &signature));
        assert!(!verify_sha256(&key.public_key(), b"massage", &signature));
        assert!(!verify_sha256(
            &key.public_key(),
            b"message",
            &signature[1..]
        ));
    }

    #[test]
    fn key_inside_output_folder_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let site = dir.path();
        std::fs::create_dir_all(site.join("public")).unwrap();
        assert!(ensure_outside(&site.join("relais-key.pem"), &site.join("public")).is_ok());
        assert!(ensure_outside(&site.join("public-key.pem"), &site.join("public")).is_ok());
        let err = ensure_outside(&site.join("public/key.pem"), &site.join("public")).unwrap_err();
        assert!(matches!(err, KeyError::InsideOutput { .. }));
        // Neither needs to exist, and `..` cannot hide the key.
        assert!(ensure_outside(&site.join("out/../out/keys/k.pem"), &site.join("out/./")).is_err());
        assert!(ensure_outside(&site.join("out/../k.pem"), &site.join("out")).is_ok());
        // The output folder itself is no place for a key either.
        assert!(ensure_outside(&site.join("public"), &site.join("public")).is_err());
    }

    #[cfg(unix)]
    #[test]
    fn key_reached_through_a_symlink_into_the_output_folder_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let site = dir.path();
        std::fs::create_dir_all(site.join("public/secret")).unwrap();
        std::os::unix::fs::symlink(site.join("public/secret"), site.join("keys")).unwrap();
        assert!(ensure_outside(&site.join("keys/k.pem"), &site.join("public")).is_err());
    }
}

/// Where the public half of the site key is kept beside the private one
/// (`relais-key.pem` → `relais-key.pub.pem`): safe to commit, so a static host's build,
/// which must not hold the private key, can still publish the actor's `publicKeyPem`.
pub fn public_key_path(private_key_path: &Path) -> PathBuf {
    let stem = private_key_path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "relais-key".into());
    private_key_path.with_file_name(format!("{stem}.pub.pem"))
}

/// How the build found the site's public key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SiteKeySource {
    /// Derived from the private key.
    PrivateKey,
    /// Read from the committed public key file (the private key lives on the inbox host).
    PublicKeyFile,
    /// No key existed: a new pair was written.
    Generated,
}

/// The site's public key PEM for the actor documents. Prefers the private key (so the
/// published key always matches what signs), falls back to the public key file, and
/// generates a pair when neither exists.
pub fn site_public_key(private_key_path: &Path) -> Result<(String, SiteKeySource), KeyError> {
    let public_path = public_key_path(private_key_path);
    if private_key_path.exists() {
        let key = PrivateKey::load(private_key_path)?;
        let pem = key.public_key_pem()?;
        if !public_path.exists() {
            write_public_key(&public_path, &pem)?;
        }
        return Ok((pem, SiteKeySource::PrivateKey));
    }
    if public_path.exists() {
        let pem = std::fs::read_to_string(&public_path).map_err(|source| KeyError::Read {
            path: public_path.clone(),
            source,
        })?;
        parse_public_key_pem(&pem)?;
        return Ok((pem, SiteKeySource::PublicKeyFile));
    }
    let pem = generate_site_key(private_key_path, false)?;
    Ok((pem, SiteKeySource::Generated))
}

/// Writes a new key pair (private 0600, public beside it) and returns the public PEM.
pub fn generate_site_key(private_key_path: &Path, overwrite: bool) -> Result<String, KeyError> {
    let key = PrivateKey::generate()?;
    key.save(private_key_path, overwrite)?;
    let pem = key.public_key_pem()?;
    write_public_key(&public_key_path(private_key_path), &pem)?;
    Ok(pem)
}

fn write_public_key(path: &Path, pem: &str) -> Result<(), KeyError> {
    std::fs::write(path, pem).map_err(|source| KeyError::Write {
        path: path.to_path_buf(),
        source,
    })
}

#[cfg(test)]
mod site_key_tests {
    use super::*;

    #[test]
    fn generates_then_reuses_then_falls_back_to_the_public_file() {
        let dir = tempfile::tempdir().unwrap();
        let private = dir.path().join("relais-key.pem");
        let (first, source) = site_public_key(&private).unwrap();
        assert_eq!(source, SiteKeySource::Generated);
        assert!(dir.path().join("relais-key.pub.pem").exists());
        let (again, source) = site_public_key(&private).unwrap();
        assert_eq!(
            (again.as_str(), source),
            (first.as_str(), SiteKeySource::PrivateKey)
        );
        std::fs::remove_file(&private).unwrap();
        let (public_only, source) = site_public_key(&private).unwrap();
        assert_eq!(
            (public_only.as_str(), source),
            (first.as_str(), SiteKeySource::PublicKeyFile)
        );
    }
}
