//! A fixed-capacity, append-only buffer: one appender, any number of readers of the prefix
//! appended so far, no copies and no locks on the read side.
//!
//! The mutable segment keeps its rung vectors here so that a snapshot can scan the rows it saw
//! as one contiguous slice (what the scan kernels take) while the writer keeps appending after
//! them. The storage is allocated once (64-byte aligned, pages touched only when written) and
//! never moves; a row is written before the length that covers it is published (release), and
//! readers only ever see rows below a published length (acquire), which are never written again.

use std::alloc::{Layout, alloc, dealloc};
use std::marker::PhantomData;
use std::ptr::NonNull;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Alignment of the storage (a cache line, and what the widest SIMD loads like).
const ALIGN: usize = 64;

/// See the module docs. `T` is a plain value type (`f32`, `f16`, `u64`).
pub(crate) struct AppendBuffer<T: Copy> {
    ptr: NonNull<T>,
    capacity: usize,
    len: AtomicUsize,
    /// Serialises appenders (there is one in practice: the writer holding the index state).
    append: Mutex<()>,
    _owns: PhantomData<T>,
}

// SAFETY: the buffer owns its values (like a `Vec<T>`); readers only read the published prefix,
// which is never written again, and appends are serialised by `append`.
unsafe impl<T: Copy + Send> Send for AppendBuffer<T> {}
// SAFETY: as above: shared access reads only immutable published values.
unsafe impl<T: Copy + Send + Sync> Sync for AppendBuffer<T> {}

/// The buffer has no room for the values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Full;

impl<T: Copy> AppendBuffer<T> {
    fn layout(capacity: usize) -> Layout {
        let bytes = capacity.checked_mul(size_of::<T>()).expect("append buffer size overflows");
        Layout::from_size_align(bytes.max(1), ALIGN.max(align_of::<T>())).expect("valid append buffer layout")
    }

    /// Room for `capacity` values, none appended.
    pub(crate) fn with_capacity(capacity: usize) -> AppendBuffer<T> {
        let layout = Self::layout(capacity);
        // SAFETY: the layout has a non-zero size.
        let raw = unsafe { alloc(layout) };
        let Some(ptr) = NonNull::new(raw.cast::<T>()) else { std::alloc::handle_alloc_error(layout) };
        AppendBuffer { ptr, capacity, len: AtomicUsize::new(0), append: Mutex::new(()), _owns: PhantomData }
    }

    /// Values appended so far.
    pub(crate) fn len(&self) -> usize {
        self.len.load(Ordering::Acquire)
    }

    /// Appends `values` after the ones already there, or refuses (changing nothing) when they
    /// do not fit.
    pub(crate) fn push(&self, values: &[T]) -> Result<(), Full> {
        let _guard = self.append.lock().unwrap_or_else(|e| e.into_inner());
        let len = self.len.load(Ordering::Relaxed);
        if values.len() > self.capacity - len {
            return Err(Full);
        }
        // SAFETY: `len + values.len() <= capacity`, the region past `len` is not visible to any
        // reader (they read below the published length only), and appenders are serialised.
        unsafe { std::ptr::copy_nonoverlapping(values.as_ptr(), self.ptr.as_ptr().add(len), values.len()) };
        self.len.store(len + values.len(), Ordering::Release);
        Ok(())
    }

    /// The first `n` values (`n` is clamped to what was appended).
    pub(crate) fn prefix(&self, n: usize) -> &[T] {
        let n = n.min(self.len());
        // SAFETY: the first `len` values were initialised before `len` was published (acquire
        // above) and are never written again.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), n) }
    }
}

impl<T: Copy> Drop for AppendBuffer<T> {
    fn drop(&mut self) {
        // SAFETY: allocated in `with_capacity` with this layout; `T: Copy` needs no drop.
        unsafe { dealloc(self.ptr.as_ptr().cast::<u8>(), Self::layout(self.capacity)) };
    }
}

impl<T: Copy> std::fmt::Debug for AppendBuffer<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppendBuffer").field("len", &self.len()).field("capacity", &self.capacity).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn appends_within_capacity_and_keeps_the_prefix_stable() {
        let b = AppendBuffer::<f32>::with_capacity(6);
        assert_eq!(b.prefix(10), &[] as &[f32]);
        b.push(&[1.0, 2.0]).unwrap();
        let seen = b.prefix(2);
        b.push(&[3.0, 4.0, 5.0]).unwrap();
        assert_eq!(seen, &[1.0, 2.0], "a prefix never changes under a reader");
        assert_eq!(b.push(&[6.0, 7.0]), Err(Full), "refused whole");
        assert_eq!(b.len(), 5);
        b.push(&[6.0]).unwrap();
        assert_eq!(b.prefix(6), &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
        assert_eq!(b.prefix(6).as_ptr() as usize % ALIGN, 0);
        assert_eq!(AppendBuffer::<u64>::with_capacity(0).push(&[1]), Err(Full));
    }

    #[test]
    fn readers_see_whole_rows_while_one_thread_appends() {
        let b = Arc::new(AppendBuffer::<u64>::with_capacity(4 * 20_000));
        let writer = {
            let b = Arc::clone(&b);
            std::thread::spawn(move || {
                for i in 0..20_000u64 {
                    b.push(&[i, i, i, i]).unwrap();
                }
            })
        };
        let mut checked = 0;
        while checked < 20_000 {
            let rows = b.prefix(b.len());
            for (i, row) in rows.chunks_exact(4).enumerate().skip(checked) {
                assert!(row.iter().all(|&v| v == i as u64));
            }
            checked = rows.len() / 4;
        }
        writer.join().unwrap();
    }
}
