//! On-disk cache of compiled policies, so a warm start compiles nothing.
//!
//! An entry is named by the sha256 of the component's bytes and a sha256 of
//! the engine's compatibility hash (which covers the wasmtime version, the
//! engine configuration and the host CPU features): a new module, a new
//! wasmtime or a changed configuration each miss and recompile.
//!
//! Loading an entry runs native code that wasmtime trusts to be its own
//! output, so the cache directory must be as trusted as the binary: it is
//! created private (0700) and refused if anyone else could write to it.

use std::fs;
use std::hash::{Hash, Hasher};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use wasmtime::Engine;
use wasmtime::component::Component;

/// A compiled-module cache in one directory.
#[derive(Debug)]
pub(crate) struct CompileCache {
    dir: PathBuf,
    engine_key: String,
}

/// Why the cache directory cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    /// The directory cannot be created or inspected.
    #[error("cannot use compilation cache directory {path}")]
    Io {
        /// The directory.
        path: PathBuf,
        /// What failed.
        #[source]
        source: std::io::Error,
    },
    /// Someone other than this user could plant compiled code in it.
    #[error(
        "compilation cache directory {path} is writable by other users or owned by another user; \
         compiled code loaded from it would not be trustworthy (chmod 700 it, or choose another)"
    )]
    Untrusted {
        /// The directory.
        path: PathBuf,
    },
}

impl CompileCache {
    /// Opens (creating if needed) the cache in `dir` for `engine`.
    pub(crate) fn open(dir: &Path, engine: &Engine) -> Result<Self, CacheError> {
        let io = |source| CacheError::Io {
            path: dir.to_path_buf(),
            source,
        };
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(io)?;
        let metadata = fs::metadata(dir).map_err(io)?;
        let foreign_owner = metadata.uid() != rustix::process::geteuid().as_raw();
        let writable_by_others = metadata.permissions().mode() & 0o022 != 0;
        if foreign_owner || writable_by_others {
            return Err(CacheError::Untrusted {
                path: dir.to_path_buf(),
            });
        }

        let mut hasher = Sha256Hasher(Sha256::new());
        engine.precompile_compatibility_hash().hash(&mut hasher);
        let engine_key = crate::hex(&hasher.0.finalize()[..16]);
        Ok(Self {
            dir: dir.to_path_buf(),
            engine_key,
        })
    }

    /// Returns the compiled component for `wasm`, from the cache when
    /// present, compiling and storing it otherwise. A damaged or unreadable
    /// entry is recompiled, never fatal.
    pub(crate) fn load(
        &self,
        engine: &Engine,
        wasm: &[u8],
        digest: &str,
    ) -> wasmtime::Result<Component> {
        let path = self.dir.join(format!("{digest}-{}.cwasm", self.engine_key));
        if let Ok(bytes) = fs::read(&path) {
            // SAFETY: `Component::deserialize` requires bytes produced by
            // `Component::serialize` of a compatible engine. The entry was
            // written by `store` below into a directory that only this user
            // can write (checked in `open`), under a name that includes the
            // engine's compatibility hash; wasmtime additionally checks the
            // version and configuration recorded in the artifact and rejects
            // a mismatch with an error.
            #[allow(unsafe_code, reason = "see the SAFETY comment")]
            match unsafe { Component::deserialize(engine, &bytes) } {
                Ok(component) => {
                    tracing::debug!(digest, "loaded the compiled policy from the cache");
                    return Ok(component);
                }
                Err(error) => {
                    tracing::warn!(path = %path.display(), "ignoring unusable cache entry: {error:#}")
                }
            }
        }
        let component = Component::new(engine, wasm)?;
        tracing::debug!(digest, "compiled the policy");
        if let Err(error) = self.store(&path, &component) {
            tracing::warn!(path = %path.display(), "cannot write compilation cache entry: {error:#}");
        }
        Ok(component)
    }

    /// Writes an entry atomically (temporary file, then rename), so a reader
    /// never sees half of one.
    fn store(&self, path: &Path, component: &Component) -> wasmtime::Result<()> {
        let bytes = component.serialize()?;
        let mut temporary = tempfile::NamedTempFile::new_in(&self.dir)?;
        temporary.write_all(&bytes)?;
        temporary.as_file().sync_all()?;
        temporary.persist(path)?;
        Ok(())
    }
}

/// Feeds `Hash` output into sha256, so the key is stable across Rust releases
/// (`DefaultHasher` is not).
struct Sha256Hasher(Sha256);

impl Hasher for Sha256Hasher {
    fn finish(&self) -> u64 {
        // Never called by `Hash::hash`; only the sha256 digest is read.
        0
    }

    fn write(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }
}
