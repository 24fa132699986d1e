//! A per-thread cache of pre-token → ids, shared by both tokenizer engines.
//! Pre-tokens repeat (words, spaces); remembering recent ones skips their
//! merges, and for a `tokenizer.json` also the `tokenizers` crate's
//! allocation of one `String` per token it returns. Bounded, and cleared
//! when full.

use std::cell::RefCell;

use rustc_hash::FxHashMap;

const CACHE_ENTRIES: usize = 1 << 16;
/// Longer pre-tokens are not cached (rare, and they would crowd the cache).
const CACHE_MAX_BYTES: usize = 32;

/// Pre-token → ids, for the encoder whose id is `owner`.
#[derive(Default)]
struct PieceCache {
    owner: u64,
    ids: FxHashMap<Box<[u8]>, Box<[u32]>>,
}

thread_local! {
    static CACHE: RefCell<PieceCache> = RefCell::new(PieceCache::default());
}

/// Distinguishes encoders, so that a thread serving two vocabularies never
/// answers one from the other's cache.
static NEXT_OWNER_ID: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

/// A fresh id for an encoder's entries.
pub(crate) fn owner_id() -> u64 {
    NEXT_OWNER_ID.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
}

/// Appends the ids of `piece` to `out`: from this thread's cache when
/// `owner` put them there, else from `encode` (which appends them), keeping
/// them for next time. `encode` must depend on `piece` alone; when it
/// returns false (it could not encode the piece and appended nothing),
/// nothing is kept and this returns false.
pub(crate) fn encode_cached(
    owner: u64,
    piece: &[u8],
    out: &mut Vec<u32>,
    encode: impl FnOnce(&mut Vec<u32>) -> bool,
) -> bool {
    if piece.len() > CACHE_MAX_BYTES {
        return encode(out);
    }
    CACHE.with(|cache| {
        let mut cache = cache.borrow_mut();
        if cache.owner != owner {
            cache.owner = owner;
            cache.ids.clear();
        }
        if let Some(ids) = cache.ids.get(piece) {
            out.extend_from_slice(ids);
            return true;
        }
        let start = out.len();
        if !encode(out) {
            return false;
        }
        if cache.ids.len() >= CACHE_ENTRIES {
            cache.ids.clear();
        }
        cache.ids.insert(piece.into(), out[start..].into());
        true
    })
}
