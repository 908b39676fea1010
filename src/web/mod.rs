//! Browser only: the workers that run all model work (the sampling page's [`SamplerWorker`], the
//! explainer's [`ExplainerWorker`] and [`TrainerWorker`], the restore page's [`RestoreWorker`]), their backend and weights, and drawing into the explainer's
//! offscreen canvases. The pages' own threads load no wasm: they send typed requests
//! (`crate::app::protocol`) and draw what comes back. Tensors are read only with
//! `into_data_async().await`.

use wasm_bindgen::prelude::*;

mod backend;
mod draw;
mod explainer_worker;
mod restore_worker;
mod sampler_worker;
mod session;
mod trainer_worker;

pub use backend::{Backend, init_backend};
pub use explainer_worker::ExplainerWorker;
pub use restore_worker::RestoreWorker;
pub use sampler_worker::{SamplerWorker, readout};
pub use session::{Session, read_f32};
pub use trainer_worker::TrainerWorker;

#[wasm_bindgen(start)]
pub fn start() {
    run_static_constructors();
    console_error_panic_hook::set_once();
}

unsafe extern "C" {
    /// Synthesised by wasm-ld: runs the module's static constructors (the `inventory`
    /// registries inside Burn's kernel compiler).
    fn __wasm_call_ctors();
}

/// Runs the static constructors once per instance. A module that never calls `__wasm_call_ctors`
/// itself is linked "command-style": wasm-ld then re-runs every constructor at the top of every
/// exported function, each allocation and callback across the JS boundary included, which was a
/// third of a grid-1 CPU step (docs/performance.md). Calling it here turns that off.
pub fn run_static_constructors() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| unsafe { __wasm_call_ctors() });
}

/// Bytes of WebAssembly linear memory this page's module holds now. It only grows, in 64 KiB
/// pages, when the allocator needs a new high-water mark.
#[wasm_bindgen(js_name = wasmMemoryBytes)]
pub fn wasm_memory_bytes() -> f64 {
    (core::arch::wasm32::memory_size(0) * 65536) as f64
}

/// Bytes the Rust heap has allocated and not freed: the exact measure of a leak across runs.
#[wasm_bindgen(js_name = heapLiveBytes)]
pub fn heap_live_bytes() -> f64 {
    counting_allocator::LIVE.load(std::sync::atomic::Ordering::Relaxed) as f64
}

mod counting_allocator {
    //! The system allocator, counting live bytes (one relaxed atomic add per call).
    use std::alloc::{GlobalAlloc, Layout, System};
    use std::sync::atomic::{AtomicUsize, Ordering};

    pub static LIVE: AtomicUsize = AtomicUsize::new(0);

    struct Counting;

    unsafe impl GlobalAlloc for Counting {
        unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
            let p = unsafe { System.alloc(layout) };
            if !p.is_null() {
                LIVE.fetch_add(layout.size(), Ordering::Relaxed);
            }
            p
        }
        unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
            let p = unsafe { System.alloc_zeroed(layout) };
            if !p.is_null() {
                LIVE.fetch_add(layout.size(), Ordering::Relaxed);
            }
            p
        }
        unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
            unsafe { System.dealloc(ptr, layout) };
            LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
        }
        unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
            let p = unsafe { System.realloc(ptr, layout, new_size) };
            if !p.is_null() {
                LIVE.fetch_add(new_size, Ordering::Relaxed);
                LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
            }
            p
        }
    }

    #[global_allocator]
    static ALLOCATOR: Counting = Counting;
}
