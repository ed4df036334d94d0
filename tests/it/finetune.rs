//! The fine-tuning recipe's pieces: its input pipeline against the one used to serve the model,
//! and its learning-rate schedule.

use candle_core::Device;
use wick::data::cifar10::Cifar10;
use wick::data::preprocess::Preprocess;
use wick::train::config::FinetuneConfig;
use wick::train::finetune::input_batch;
use wick::util::rng::Rng;

fn noise_images(n: usize) -> Cifar10 {
    let mut rng = Rng::new(5);
    Cifar10 { labels: vec![0; n], pixels: (0..n * 3072).map(|_| rng.below(256) as u8).collect() }
}

#[test]
fn un_augmented_training_input_is_what_the_exported_model_is_fed() {
    let set = noise_images(3);
    let lite = Preprocess::efficientnet_lite();
    for img_size in [32, 64, 100] {
        let config = FinetuneConfig { img_size, ..FinetuneConfig::default() };
        let batch = input_batch(&set, &[0, 1, 2], &config, &lite, None, &Device::Cpu).unwrap();
        let batch: Vec<f32> = batch.flatten_all().unwrap().to_vec1().unwrap();
        let served: Vec<f32> = (0..3).flat_map(|i| config.preprocess(&lite).apply(&set.image(i))).collect();
        assert_eq!(batch.len(), served.len());
        let worst = batch.iter().zip(&served).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
        // The served path keeps the resized image in 8-bit pixels: one level is 2/255 in [-1, 1]
        // (a half-pixel misalignment would be off by tens of levels on noise).
        assert!(worst <= 2.01 / 255.0, "img_size {img_size}: max difference {worst}");
    }
}

#[test]
fn augmentation_crops_and_mirrors_within_the_padding() {
    let set = noise_images(1);
    let lite = Preprocess::efficientnet_lite();
    let config = FinetuneConfig { img_size: 32, crop_padding: 4, ..FinetuneConfig::default() };
    let plain: Vec<f32> =
        input_batch(&set, &[0], &config, &lite, None, &Device::Cpu).unwrap().flatten_all().unwrap().to_vec1().unwrap();
    let mut rng = Rng::new(1);
    let mut saw_change = false;
    for _ in 0..20 {
        let x: Vec<f32> = input_batch(&set, &[0], &config, &lite, Some(&mut rng), &Device::Cpu)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        // Every augmented row is a shifted (possibly mirrored) piece of the image, or padding (-1).
        let padding = x.iter().filter(|&&v| v == -1.0).count();
        assert!(padding <= 3 * (32 * 32 - 24 * 24), "more padding than a 4-pixel shift makes: {padding}");
        saw_change |= x != plain;
    }
    assert!(saw_change, "20 augmented copies were all the plain image");
}

#[test]
fn the_schedule_warms_up_then_decays_to_zero() {
    let config = FinetuneConfig { epochs: 10, warmup_epochs: 2, learning_rate: 0.1, ..FinetuneConfig::default() };
    let steps = 50;
    let schedule = config.schedule(steps);
    assert_eq!(schedule.clamped_from, None);
    let lr = |step| schedule.learning_rate(step);
    assert!((lr(0) - 0.1 / 100.0).abs() < 1e-12);
    assert!((0..99).all(|s| lr(s) < lr(s + 1)), "warm-up rises");
    assert!((lr(99) - 0.1).abs() < 1e-12, "the peak ends the warm-up");
    assert!((100..499).all(|s| lr(s) >= lr(s + 1)), "then it decays");
    assert!(lr(499) < 1e-5 && lr(499) > 0.0);
}

#[test]
fn a_warm_up_as_long_as_the_run_is_cut_to_half_of_it() {
    let config = FinetuneConfig { epochs: 1, warmup_epochs: 1, learning_rate: 0.1, ..FinetuneConfig::default() };
    config.validate().unwrap();
    let schedule = config.schedule(40);
    assert_eq!((schedule.warmup_steps, schedule.clamped_from), (20, Some(40)));
    let lr = |step| schedule.learning_rate(step);
    assert!((lr(19) - 0.1).abs() < 1e-12, "the peak ends the shortened warm-up");
    assert!((20..39).all(|s| lr(s) > lr(s + 1)) && lr(39) > 0.0, "then it decays");
}
