//! The fused SiLU(GroupNorm(x)) of `nets::fused` against plain Burn: its exp against f64, the
//! operation on random tensors, and the whole U-Net (shipped weights) with the fused path on and
//! off. Its own test binary, since it switches the process-wide path.

mod common;

use burn::nn::GroupNormConfig;
use burn::tensor::{Int, Tensor, TensorData};
use common::tolerance::Tolerance;
use common::{dev, read};
use ddpm_web::diffusion::noise::NoiseSource;
use ddpm_web::nets::fused::{add_norm_silu, exp_f32, norm as fused_norm, norm_silu, reference_add_norm_silu, reference_norm_silu, set_fused, silu_f32, takes_fused_path};
use ddpm_web::nets::unet::NULL_CLASS;

#[test]
fn the_vectorisable_exp_is_within_its_stated_bound_and_silu_with_it_too() {
    let mut worst = 0.0f64;
    let mut worst_silu = 0.0f64;
    for k in 0..=1_750_000 {
        let x = -87.0 + k as f64 * 1e-4;
        let x32 = x as f32;
        let exact = (x32 as f64).exp();
        worst = worst.max(((exp_f32(x32) as f64 - exact) / exact).abs());
        let y = x32 / 8.0;
        let silu = y as f64 / (1.0 + (-(y as f64)).exp());
        if silu.abs() > 1e-30 {
            worst_silu = worst_silu.max(((silu_f32(y) as f64 - silu) / silu).abs());
        }
    }
    println!("max relative error: exp {worst:.3e}, silu {worst_silu:.3e}");
    // The bound `exp_f32` states (measured here: 8.3e-8), and SiLU's with one more division.
    assert!(worst <= 1e-7, "exp: {worst:e}");
    assert!(worst_silu <= 2e-7, "silu: {worst_silu:e}");
    // Beyond the range: e^-100 is about 0 and e^100 saturates (SiLU is then 0 and y).
    assert!(exp_f32(-100.0) < 1e-37 && exp_f32(100.0).is_finite());
    assert!(silu_f32(-100.0) <= 0.0 && silu_f32(-100.0) > -1e-35);
    assert_eq!(silu_f32(100.0), 100.0);
}

/// The tests that read or switch the process-wide path take turns.
static PATH: std::sync::Mutex<()> = std::sync::Mutex::new(());

#[test]
fn fused_group_norm_with_and_without_bias_and_silu_equals_burns_modules() {
    let _turn = PATH.lock().unwrap();
    let mut rng = NoiseSource::new(3);
    for (n, c, side, groups) in [(3, 64, 7, 8), (2, 32, 28, 8), (1, 16, 14, 4)] {
        let mut norm = GroupNormConfig::new(groups, c).init(&dev());
        let gamma: Vec<f32> = rng.normal(c).iter().map(|v| 1.0 + 0.3 * v).collect();
        let beta: Vec<f32> = rng.normal(c).iter().map(|v| 0.5 * v).collect();
        norm.gamma = Some(burn::module::Param::from_tensor(Tensor::from_data(TensorData::new(gamma, [c]), &dev())));
        norm.beta = Some(burn::module::Param::from_tensor(Tensor::from_data(TensorData::new(beta, [c]), &dev())));
        // Offset and scaled like activations, so the mean matters.
        let x: Vec<f32> = rng.normal(n * c * side * side).iter().map(|v| 0.7 + 2.0 * v).collect();
        let x = Tensor::<4>::from_data(TensorData::new(x, [n, c, side, side]), &dev());
        assert!(takes_fused_path(&dev()) && !takes_fused_path(&dev().autodiff()), "flex takes the fused path, autodiff does not");
        let fused = read(norm_silu(&norm, x.clone()));
        let plain = read(reference_norm_silu(&norm, x.clone()));
        Tolerance::new(1e-5, 1e-6).check(&format!("[{n}, {c}, {side}, {side}] in {groups} groups"), &fused, &plain).unwrap();
        // GroupNorm alone (the attention block's), fused and as Burn's module.
        let fused = read(fused_norm(&norm, x.clone()));
        let plain = read(norm.forward(x.clone()));
        Tolerance::new(1e-5, 1e-6).check(&format!("[{n}, {c}, {side}, {side}] without SiLU"), &fused, &plain).unwrap();
        assert!(plain.iter().any(|v| *v < -0.5), "GroupNorm's output keeps its negative values: no SiLU was applied");
        // With the embedding's bias [n, c] added first.
        let bias = Tensor::<2>::from_data(TensorData::new(rng.normal(n * c).iter().map(|v| 1.5 * v).collect::<Vec<f32>>(), [n, c]), &dev());
        let fused = read(add_norm_silu(&norm, x.clone(), bias.clone()));
        let plain = read(reference_add_norm_silu(&norm, x, bias));
        Tolerance::new(1e-5, 1e-6).check(&format!("[{n}, {c}, {side}, {side}] + bias"), &fused, &plain).unwrap();
    }
}

#[test]
fn the_shipped_unet_is_the_same_with_the_fused_path_on_and_off() {
    let _turn = PATH.lock().unwrap();
    let (_, unet, _) = common::shipped_models();
    let mut rng = NoiseSource::new(8);
    let x = Tensor::<4>::from_data(TensorData::new(rng.normal(4 * 784), [4, 1, 28, 28]), &dev());
    let t = [1.0f32, 50.0, 400.0, 1000.0];
    let c = Tensor::<1, Int>::from_data(TensorData::new(vec![3i64, 7, NULL_CLASS as i64, 0], [4]), &dev());
    set_fused(false);
    assert!(!takes_fused_path(&dev()));
    let plain = read(unet.forward(x.clone(), &t, c.clone()));
    set_fused(true);
    assert!(takes_fused_path(&dev()));
    let fused = read(unet.forward(x, &t, c));
    common::tolerance::FUSED_KERNEL.check("the U-Net's eps", &fused, &plain).unwrap();
}
