//! The site's RSA key pair and the public keys of remote actors.
//!
//! Mastodon only understands RSA (`publicKeyPem` in the actor, RSASSA-PKCS1-v1_5 with SHA-256
//! in HTTP signatures), so that is the one kind of key relais has.

use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rsa::{KeyPair, KeySize};
use aws_lc_rs::signature::{
    KeyPair as _, ParsedPublicKey, RSA_PKCS1_1024_8192_SHA256_FOR_LEGACY_USE_ONLY, RSA_PKCS1_SHA256,
};
use base64::Engine;

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
    #[error("cannot generate an RSA key")]
    Generate,
    #[error("cannot encode the key as DER")]
    Encode,
    #[error("cannot sign: the RSA operation failed")]
    Sign,
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

/// An RSA private key, parsed once and shared by every signature (cloning shares it).
/// `Debug` never prints key material.
///
/// Signing runs in aws-lc (AWS's BoringSSL fork), whose RSA private-key operations are
/// constant-time and blinded: the pure-Rust `rsa` crate they replace leaks timing
/// (RUSTSEC-2023-0071, the Marvin attack) and was about five times slower.
#[derive(Clone)]
pub struct PrivateKey {
    pair: Arc<KeyPair>,
    public: PublicKey,
}

impl std::fmt::Debug for PrivateKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PrivateKey(..)")
    }
}

impl PrivateKey {
    /// A fresh RSA-2048 key from the operating system's random source.
    pub fn generate() -> Result<PrivateKey, KeyError> {
        let pair = KeyPair::generate(KeySize::Rsa2048).map_err(|_| KeyError::Generate)?;
        PrivateKey::new(pair)
    }

    /// Parses PKCS#8 (`BEGIN PRIVATE KEY`) or PKCS#1 (`BEGIN RSA PRIVATE KEY`) PEM, so a key
    /// made by `openssl genrsa` of any age can be used, as long as it has 2048 to 8192 bits
    /// (what aws-lc signs with). The error text never holds key material.
    pub fn from_pem(pem: &str) -> Result<PrivateKey, String> {
        let (label, der) = decode_pem(pem)?;
        let pair = match label {
            "RSA PRIVATE KEY" => KeyPair::from_der(&der),
            "PRIVATE KEY" => KeyPair::from_pkcs8(&der),
            other => return Err(format!("unexpected PEM label {other:?}")),
        }
        .map_err(|e| match e.description_() {
            "TooSmall" => {
                "the key has fewer than 2048 bits; make a new one (relais keygen --force)"
                    .to_string()
            }
            "TooLarge" => "the key has more than 8192 bits".to_string(),
            other => format!("the key is not valid ({other})"),
        })?;
        PrivateKey::new(pair).map_err(|e| e.to_string())
    }

    fn new(pair: KeyPair) -> Result<PrivateKey, KeyError> {
        let spki = pair.public_key().as_der().map_err(|_| KeyError::Encode)?;
        let public = PublicKey::from_der(spki.as_ref())?;
        Ok(PrivateKey {
            pair: Arc::new(pair),
            public,
        })
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
        let der = AsDer::<aws_lc_rs::encoding::Pkcs8V1Der>::as_der(self.pair.as_ref())
            .map_err(|_| KeyError::Encode)?;
        let pem = encode_pem("PRIVATE KEY", der.as_ref());
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

    pub fn public_key(&self) -> PublicKey {
        self.public.clone()
    }

    /// SPKI PEM (`BEGIN PUBLIC KEY`): the `publicKeyPem` of the actor document.
    pub fn public_key_pem(&self) -> Result<String, KeyError> {
        Ok(spki_pem(&self.public))
    }

    /// RSASSA-PKCS1-v1_5 over SHA-256 of `message`: what `rsa-sha256` and Mastodon's
    /// `hs2019` mean. Deterministic: the same message always gives the same signature.
    pub fn sign_sha256(&self, message: &[u8]) -> Result<Vec<u8>, KeyError> {
        let mut signature = vec![0; self.pair.public_modulus_len()];
        // aws-lc ignores the random source for PKCS#1 v1.5 (its blinding draws its own).
        let rng = aws_lc_rs::rand::SystemRandom::new();
        self.pair
            .sign(&RSA_PKCS1_SHA256, &rng, message, &mut signature)
            .map_err(|_| KeyError::Sign)?;
        Ok(signature)
    }
}

/// A remote actor's (or our own) RSA public key, parsed once for every verification.
/// Equal keys have the same SPKI encoding.
#[derive(Clone)]
pub struct PublicKey {
    parsed: ParsedPublicKey,
}

impl PublicKey {
    /// From DER, SPKI or PKCS#1 `RSAPublicKey`; kept as SPKI. Keys from 1024 to 8192 bits
    /// verify, as Mastodon's OpenSSL accepts them.
    pub fn from_der(der: &[u8]) -> Result<PublicKey, KeyError> {
        let invalid = |_| KeyError::ParsePublic("not a valid RSA public key".into());
        let spki = aws_lc_rs::rsa::PublicKey::from_der(der)
            .map_err(invalid)?
            .as_der()
            .map_err(|_| KeyError::Encode)?;
        let parsed = ParsedPublicKey::new(
            &RSA_PKCS1_1024_8192_SHA256_FOR_LEGACY_USE_ONLY,
            spki.as_ref(),
        )
        .map_err(invalid)?;
        Ok(PublicKey { parsed })
    }

    /// The SubjectPublicKeyInfo DER of the key.
    pub fn spki_der(&self) -> &[u8] {
        self.parsed.as_ref()
    }
}

impl PartialEq for PublicKey {
    fn eq(&self, other: &PublicKey) -> bool {
        self.spki_der() == other.spki_der()
    }
}

impl Eq for PublicKey {}

impl std::fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PublicKey({})", spki_pem(self).trim_end())
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
pub fn verify_sha256(key: &PublicKey, message: &[u8], signature: &[u8]) -> bool {
    key.parsed.verify_sig(message, signature).is_ok()
}

/// SPKI PEM of a public key, with a final newline as Mastodon writes it.
pub fn public_key_to_pem(key: &PublicKey) -> Result<String, KeyError> {
    Ok(spki_pem(key))
}

fn spki_pem(key: &PublicKey) -> String {
    encode_pem("PUBLIC KEY", key.spki_der())
}

/// Parses a remote actor's `publicKeyPem`: SPKI (`BEGIN PUBLIC KEY`) or PKCS#1
/// (`BEGIN RSA PUBLIC KEY`), as Mastodon accepts both.
///
/// The PEM armour is read leniently (any line length, CRLF, surrounding text) because peers
/// emit all of these; the DER inside is then decoded strictly.
pub fn parse_public_key_pem(pem: &str) -> Result<PublicKey, KeyError> {
    let (label, der) = decode_pem(pem).map_err(KeyError::ParsePublic)?;
    match label {
        "PUBLIC KEY" | "RSA PUBLIC KEY" => PublicKey::from_der(&der),
        other => Err(KeyError::ParsePublic(format!(
            "unexpected PEM label {other:?}"
        ))),
    }
}

/// PEM armour as OpenSSL writes it: 64 base64 characters a line, final newline.
fn encode_pem(label: &str, der: &[u8]) -> String {
    let body = base64::engine::general_purpose::STANDARD.encode(der);
    let mut pem = format!("-----BEGIN {label}-----\n");
    for line in body.as_bytes().chunks(64) {
        // Base64 is ASCII, so every chunk is valid UTF-8.
        pem.push_str(&String::from_utf8_lossy(line));
        pem.push('\n');
    }
    pem.push_str(&format!("-----END {label}-----\n"));
    pem
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

/// Test keys shared by the signature tests. Signing needs 2048 bits at least (aws-lc), so the
/// signing keys are throwaway RSA-2048 keys made with OpenSSL; the draft-cavage Appendix C key
/// (1024 bits despite the draft's prose) is kept for verifying the draft's published vectors.
#[cfg(test)]
pub(crate) mod test_keys {
    /// `openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048` (PKCS#8).
    pub const TEST_PRIVATE_PEM: &str = "-----BEGIN PRIVATE KEY-----
MIIEugIBADANBgkqhkiG9w0BAQEFAASCBKQwggSgAgEAAoIBAQCWnl3bVcd5/4s5
Bun9sfZhfYs/H0E4HF/EYtry51GGijdw7PLRpgJ1wTzQRF30uShtaH4J75kaUlBj
kJFt4hn7Insugpgk6ZvP5o/OKy6aXUXBY5vL+PCChtLe9m1SqV2+b0/q+gXx0j0H
Qjja1cliaN3UkSsjuw/0FzPTlU6ZQMtIOryqE7ngeqX/YxyyUtiKxUndArH/+i7E
xmNNJiMGKIKofGD0nSgzL9j4GBgRd1yu6uAExEEsTqBqpriYIiuBNjE9Ji0RD6LT
87zbkCz4/nuEGNGz065iRp1EUZ7iYqkf7MA6T+/0AXI82rwR7H73Ib/YeEkQ2k8n
lTPM5z9JAgMBAAECgf9ffx7wphmeYc8LFxlJKBMESdSGOOO/qtdxDMI44R1ogKSh
9Avb3LvY9II6X73Uv1ro+C2iBu3BHlSRYBR6FPXzwpAgEWHTPnsJ2xlthyVLkPAH
6iZXbe0hO48mqGBoP3jQdnesEdA3WMZUtUaibfbqDlYU9uet6d33KOPlwknSpf/Z
us5lUHivbMhSqMMfDkL0Jq549fxoz4RGFYJrrH1Xxy/9MykAwGmWovWyuYxXLhey
G9+lIK89Wj4YcipP5iQQhXaCCZcJIzewl4dLGewh0BQITTLN45tlc5CtNlXiequc
bC4w9zeEczdvC3fXcJ2V6cadbGlMaUorOH/KO2ECgYEAzQE4GHzebxsi71G0mYao
GbKTzHlvuj1SKLzlzzfRDXquI1ik+96VAoK4uzV5Ao41NwuIg6D8SGyWjleeX3fo
KzOByx+l9t4QoiNEsZVWJFfi93xHjzNgzS56lE82nO+BBLYeVqNlQL+eONZCf4MX
p2YtIJTasXUBtKT2nzt81ukCgYEAvBXRPiGwQnOq2ynGnUcJvchV9Hb2rlzZg9LA
RuGdIM3haVJpRMsGzeLbrH5tiiplZKnM3GGkIa9J2l4bhBQXIb2VLgWUWbX4EjO2
JuccNo1Gl4DS/oHD493/ZfjMox7gA2blL4gLcA07wQwSg5jLYpujtRO2wDVtyPWN
z9KqqWECgYBBguU5NhYi7UoRrkuHUDfB1oZSrm/c1SG/MPZDbPPaWdzyIK7AalW1
8q4z7ReZkHZC++WJItXcEw9dt3Q9z+SagaA1mAyCQl6QYbLfCPj5Ljiym72GboW9
q9+yK0ophoP1THmPeDGwKkvWn+mqM+tILGe5ZLgqQ1jjMGA7bFgtmQKBgDz0OR6Q
nmW6xJlIPaTE2+RUY37ZevJhBuEQ0N1nyptR/YY7fgAcZ/UbWyPYyTkoqjloSgr1
3dJI039gVjyEokZ+ATWr+zrjnSSQ+6w548vOFx2MU1TFyy0yyc1LR05p+CFCHG4+
Aa7rqvzSI8HgJ7GqTPCnFefOqOiio7XBSSuhAoGAcH/pGYkfJetF8uyAkraDf8vT
MHAn0By8QmXyYDQyI7NxCNkvQQRs8jw6dfZNKHA0qK4Tdz2INQ0I8IQsqPe/rreo
Cs2cP4tqiSlcuglyll5fSUD6957b3j7+/fVio6cjMZJ8nhT+foyEut+xmJCAulgS
BCXGUqQihnkpYZHSx0U=
-----END PRIVATE KEY-----
";

    /// Its public half, `openssl pkey -pubout`.
    pub const TEST_PUBLIC_PEM: &str = "-----BEGIN PUBLIC KEY-----
MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEAlp5d21XHef+LOQbp/bH2
YX2LPx9BOBxfxGLa8udRhoo3cOzy0aYCdcE80ERd9LkobWh+Ce+ZGlJQY5CRbeIZ
+yJ7LoKYJOmbz+aPzisuml1FwWOby/jwgobS3vZtUqldvm9P6voF8dI9B0I42tXJ
Ymjd1JErI7sP9Bcz05VOmUDLSDq8qhO54Hql/2McslLYisVJ3QKx//ouxMZjTSYj
BiiCqHxg9J0oMy/Y+BgYEXdcrurgBMRBLE6gaqa4mCIrgTYxPSYtEQ+i0/O825As
+P57hBjRs9OuYkadRFGe4mKpH+zAOk/v9AFyPNq8Eex+9yG/2HhJENpPJ5UzzOc/
SQIDAQAB
-----END PUBLIC KEY-----
";

    /// An unrelated key, for "signed by someone else" cases: `openssl genrsa -traditional`
    /// (PKCS#1).
    pub const OTHER_PRIVATE_PEM: &str = "-----BEGIN RSA PRIVATE KEY-----
MIIEpQIBAAKCAQEAqnqckoPqgTSPDm+hYslDRygqXh7BCYNJdCtx7lu0y7ERZX33
H9zJzU32PCa5jusuCLOXUeXWEAvmOsnNxTuWE4/UAaxsCfEKA2r5i+KtdGHWEN+s
xKvQ7BH6rKwMtd4WlKW9/GIBSV6ENq/l/fqC+qvQXLIn5BQ8inHR4c9vpRnqHhXy
OJi0I/9bjQlFN78capOzF9SvTNMxsZz92yhut4vIgTf8HirfsKgs1aivG0sz0EW8
eh0wEiAsH4AvRTJsdgDKXYDkE9BEHRu6rRhtcxwGR92cenFMQq1ktf3oYU4BHHkF
RTYfaTWFmZSlbEIjJ0JVHLGk8P/u5w8gtaaobwIDAQABAoIBAAdKI48hnucUH+3b
w3My7J01UCJ4KYRGSIoeysoIwoFXOp7etQYiwxTz+Xchp3DqCNeMaQhdIzsfwczP
u5cXG4K4oAsg8U8M2dhtkZV0BZC4F5bfHvHF8F1ieMKQv3ZjXw8kyyvokOovOsi6
hW4dG86rhsb/7d690sePYwxxz0dS82xMNwetasBSew/Y9ACzvORkDKVxOQ+l2TaP
Wg8iCBw2E+yBl6FyWBoYiGuRzJ9v3vklm6/sQz/rvJ8S8djW++FlTuG8c2bxpdqv
iRwAY22ynNjsYTQkCrXx1svqclWuagJdBZZ0f/HWuBvx3TWLzBaDgj7rRgt2zFX0
lMZfNMkCgYEA4z/0shXHaU1VDnd/qAUtHfder4jrw3osAYA7ZgATd94NiftZUTFQ
tsxNiGmZmWTUti8WaWdJWdaAePQOfnEGeg18weiGta/n6lH/gMTCnxyqyv24s7ZS
RM6oKXNw3Cirjdf4j1+Dke5v6zP7vPVX68am54WbGx2O0pxsaNFJbjMCgYEAwAv9
zml7xxoIHY0GchSJ/fN4pEsrMnM6fdXqkLdqauAdPvy7qszCY3BuRDAsLaAgtCpX
1ti7XnvI8RAjj6g3VKNrvQa3BkfrM3x7KP0eOXStG+gh+W+g0vUNHIbr2UPsoFMd
h8I+ppncx+vL5ix2SwUrc7PBdkzsqvIXnPpSKNUCgYEA1yXy5jPGYsTLVXH/kzSr
XWaY53mrNJvTU+xy0AQcamz5xnwION2GvDo64X6Q5HBZDs8P2eTmxj5Vza3Klx0s
85sXVYJvH06WM/tD+kbOt9NtQ9fo6YQg6XH6NZxM6rM6kIU7l4nnR99FaJoDqQdj
IR8nX6TXj1lxoaZk4OvcKI8CgYEAkZ/GKmHEMRqlMrtAOvsmFAIt5e7154CGxuqR
voDGWhptMtjz+TTg5gRYKK6aoVI92kANcWXQ1nloypqhTIqSwkRVKvXPjRy11cm7
nj4pUAoQRgwEzx79RVn6Qjpw1sPxxzSfPNVnKm+bgaFkcLogTQyzgT26Ill8ULfY
ffk2ma0CgYEAlZfs05zfffE6Tbf7huYSwlVQNVOrDnsUCKC09MdMQUWKrdRkfR2i
PvXdXMmXUXxjGzWyI9DultgYAJI4UOQD1imDwR1owauX8s0N/Duhkv9pShDRfQ4b
sAKdD4YO2Qhuq4+yHW00FteKKh5SDA9RToEZXB/nzEwCQthOhprFG9U=
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
    use super::test_keys::{
        CAVAGE_PUBLIC_PEM, OTHER_PRIVATE_PEM, TEST_PRIVATE_PEM, TEST_PUBLIC_PEM,
    };
    use super::*;

    /// The draft-cavage-http-signatures-12 Appendix C private key (PKCS#1, 1024 bits).
    const CAVAGE_PRIVATE_PEM: &str = "-----BEGIN RSA PRIVATE KEY-----
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

    fn test_key() -> PrivateKey {
        PrivateKey::from_pem(TEST_PRIVATE_PEM).unwrap()
    }

    #[test]
    fn generated_key_is_2048_bits_and_round_trips_through_its_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys/site.pem");
        let key = PrivateKey::generate().unwrap();
        // A signature is as long as the modulus.
        assert_eq!(key.sign_sha256(b"m").unwrap().len() * 8, KEY_BITS);
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
    fn pkcs1_keys_load_and_are_saved_as_pkcs8() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("key.pem");
        let other = PrivateKey::from_pem(OTHER_PRIVATE_PEM).unwrap();
        other.save(&path, false).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.starts_with("-----BEGIN PRIVATE KEY-----\n"), "{text}");
        assert_eq!(
            PrivateKey::load(&path).unwrap().public_key(),
            other.public_key()
        );
    }

    #[test]
    fn keys_below_2048_bits_cannot_sign() {
        let message = PrivateKey::from_pem(CAVAGE_PRIVATE_PEM).unwrap_err();
        assert!(message.contains("fewer than 2048 bits"), "{message}");
        assert!(!message.contains("MIIC"), "{message}");
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
        let err = test_key().save(&path, false).unwrap_err();
        assert!(matches!(err, KeyError::AlreadyExists { .. }), "{err}");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "precious");

        test_key().save(&path, true).unwrap();
        assert_eq!(
            PrivateKey::load(&path).unwrap().public_key(),
            test_key().public_key()
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

        for (name, text) in [
            (
                "garbage.pem",
                "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
            ),
            ("public.pem", TEST_PUBLIC_PEM),
            ("empty.pem", ""),
        ] {
            let path = dir.path().join(name);
            std::fs::write(&path, text).unwrap();
            let err = PrivateKey::load(&path).unwrap_err();
            assert!(matches!(err, KeyError::ParsePrivate { .. }), "{err}");
            assert!(err.to_string().contains(name), "{err}");
        }
    }

    #[test]
    fn debug_output_hides_the_key() {
        assert_eq!(format!("{:?}", test_key()), "PrivateKey(..)");
    }

    #[test]
    fn public_pem_is_spki_and_matches_openssls() {
        let pem = test_key().public_key_pem().unwrap();
        assert!(pem.starts_with("-----BEGIN PUBLIC KEY-----\n"));
        assert!(pem.ends_with("-----END PUBLIC KEY-----\n"));
        assert_eq!(pem, TEST_PUBLIC_PEM);
    }

    /// `openssl rsa -pubin -RSAPublicKey_out` of [`TEST_PUBLIC_PEM`].
    const TEST_PUBLIC_PKCS1_PEM: &str = "-----BEGIN RSA PUBLIC KEY-----
MIIBCgKCAQEAlp5d21XHef+LOQbp/bH2YX2LPx9BOBxfxGLa8udRhoo3cOzy0aYC
dcE80ERd9LkobWh+Ce+ZGlJQY5CRbeIZ+yJ7LoKYJOmbz+aPzisuml1FwWOby/jw
gobS3vZtUqldvm9P6voF8dI9B0I42tXJYmjd1JErI7sP9Bcz05VOmUDLSDq8qhO5
4Hql/2McslLYisVJ3QKx//ouxMZjTSYjBiiCqHxg9J0oMy/Y+BgYEXdcrurgBMRB
LE6gaqa4mCIrgTYxPSYtEQ+i0/O825As+P57hBjRs9OuYkadRFGe4mKpH+zAOk/v
9AFyPNq8Eex+9yG/2HhJENpPJ5UzzOc/SQIDAQAB
-----END RSA PUBLIC KEY-----
";

    #[test]
    fn remote_keys_parse_as_spki_pkcs1_and_sloppy_armour() {
        let expected = test_key().public_key();
        assert_eq!(parse_public_key_pem(TEST_PUBLIC_PEM).unwrap(), expected);
        assert_eq!(
            parse_public_key_pem(TEST_PUBLIC_PKCS1_PEM).unwrap(),
            expected
        );
        // Kept as SPKI whatever the form it came in.
        assert_eq!(
            spki_pem(&parse_public_key_pem(TEST_PUBLIC_PKCS1_PEM).unwrap()),
            TEST_PUBLIC_PEM
        );

        // One long base64 line, CRLF endings and surrounding whitespace.
        let body: String = TEST_PUBLIC_PEM
            .lines()
            .filter(|l| !l.starts_with("-----"))
            .collect();
        let sloppy =
            format!("\r\n -----BEGIN PUBLIC KEY-----\r\n{body}\r\n-----END PUBLIC KEY-----");
        assert_eq!(parse_public_key_pem(&sloppy).unwrap(), expected);

        // 1024-bit keys (the draft's, old servers') still parse for verification.
        let cavage = parse_public_key_pem(CAVAGE_PUBLIC_PEM).unwrap();
        assert_eq!(spki_pem(&cavage), CAVAGE_PUBLIC_PEM);
        assert_ne!(cavage, expected);
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
        let key = test_key();
        let public = key.public_key();
        let signature = key.sign_sha256(b"message").unwrap();
        assert_eq!(signature.len(), 256);
        assert_eq!(key.sign_sha256(b"message").unwrap(), signature);
        assert!(verify_sha256(&public, b"message", &signature));
        assert!(!verify_sha256(&public, b"massage", &signature));
        assert!(!verify_sha256(&public, b"message", &signature[1..]));
        let other = PrivateKey::from_pem(OTHER_PRIVATE_PEM).unwrap();
        assert!(!verify_sha256(&other.public_key(), b"message", &signature));
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
