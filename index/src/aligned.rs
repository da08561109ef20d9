//! A fixed-length, zero-initialised buffer aligned to a cache line.
//!
//! Packed weights, scratch buffers and in-memory rung blocks live here so that every vector load
//! starts on a 64-byte boundary (a split load costs two cache lines).

use std::alloc::{Layout, alloc_zeroed, dealloc, handle_alloc_error};
use std::ops::{Deref, DerefMut};
use std::ptr::NonNull;

/// Alignment of every buffer, in bytes: one cache line, one AVX-512 register.
pub const ALIGN: usize = 64;

/// Plain numeric element types for which all-zero bytes are a valid value.
///
/// # Safety
/// Implementors must be `Copy` types without padding for which the all-zero bit pattern is valid.
pub unsafe trait Zeroable: Copy + 'static {}
// SAFETY: primitive numbers; zero bits are 0.
unsafe impl Zeroable for f32 {}
// SAFETY: as above.
unsafe impl Zeroable for u16 {}
// SAFETY: as above.
unsafe impl Zeroable for i8 {}
// SAFETY: a transparent u16; zero bits are +0.0.
unsafe impl Zeroable for half::f16 {}
// SAFETY: a transparent u16; zero bits are +0.0.
unsafe impl Zeroable for half::bf16 {}

/// A heap buffer of `len` elements, 64-byte aligned, zero-initialised.
pub struct AlignedVec<T: Zeroable> {
    ptr: NonNull<T>,
    len: usize,
}

// SAFETY: owns its elements like `Vec<T>`.
unsafe impl<T: Zeroable + Send> Send for AlignedVec<T> {}
// SAFETY: shared access only hands out `&[T]`.
unsafe impl<T: Zeroable + Sync> Sync for AlignedVec<T> {}

impl<T: Zeroable> AlignedVec<T> {
    /// A zeroed buffer of `len` elements.
    pub fn zeroed(len: usize) -> Self {
        if len == 0 || size_of::<T>() == 0 {
            return Self { ptr: NonNull::dangling(), len };
        }
        let layout = Self::layout(len);
        // SAFETY: the layout has a non-zero size.
        let raw = unsafe { alloc_zeroed(layout) };
        let Some(ptr) = NonNull::new(raw.cast::<T>()) else { handle_alloc_error(layout) };
        Self { ptr, len }
    }

    /// A buffer holding a copy of `values`.
    pub fn from_slice(values: &[T]) -> Self {
        let mut buffer = Self::zeroed(values.len());
        buffer.copy_from_slice(values);
        buffer
    }

    fn layout(len: usize) -> Layout {
        Layout::array::<T>(len).and_then(|l| l.align_to(ALIGN)).expect("buffer size overflows the address space")
    }
}

impl<T: Zeroable> Drop for AlignedVec<T> {
    fn drop(&mut self) {
        if self.len != 0 && size_of::<T>() != 0 {
            // SAFETY: allocated in `zeroed` with this exact layout.
            unsafe { dealloc(self.ptr.as_ptr().cast(), Self::layout(self.len)) }
        }
    }
}

impl<T: Zeroable> Deref for AlignedVec<T> {
    type Target = [T];
    fn deref(&self) -> &[T] {
        // SAFETY: `len` initialised elements live at `ptr` (or `len == 0` with a dangling ptr).
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }
}

impl<T: Zeroable> DerefMut for AlignedVec<T> {
    fn deref_mut(&mut self) -> &mut [T] {
        // SAFETY: as in `deref`, and `&mut self` guarantees uniqueness.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.len) }
    }
}

impl<T: Zeroable + std::fmt::Debug> std::fmt::Debug for AlignedVec<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AlignedVec").field("len", &self.len).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffers_are_aligned_and_zeroed() {
        for len in [0, 1, 17, 4096] {
            let buffer = AlignedVec::<f32>::zeroed(len);
            assert_eq!(buffer.len(), len);
            assert!(buffer.iter().all(|&x| x == 0.0));
            if len > 0 {
                assert_eq!(buffer.as_ptr() as usize % ALIGN, 0);
            }
        }
        let copy = AlignedVec::from_slice(&[1u16, 2, 3]);
        assert_eq!(&copy[..], &[1, 2, 3]);
    }
}
