//! Metrics on a hand-checked example.

use wick::eval::metrics::Metrics;

#[test]
fn metrics_match_a_hand_computed_example() {
    let labels: Vec<String> = ["cat", "dog", "fox"].iter().map(|s| s.to_string()).collect();
    // truth → predicted: cat→cat, cat→dog (0.7), dog→dog, dog→dog, fox→cat (0.6), fox→fox
    let truth = [0, 0, 1, 1, 2, 2];
    let probabilities = vec![
        vec![0.8, 0.1, 0.1],
        vec![0.2, 0.7, 0.1],
        vec![0.1, 0.8, 0.1],
        vec![0.3, 0.6, 0.1],
        vec![0.6, 0.1, 0.3],
        vec![0.1, 0.1, 0.8],
    ];
    let names: Vec<String> = (0..6).map(|i| format!("img{i}.jpg")).collect();
    let m = Metrics::compute(&labels, &truth, &probabilities, &names);

    assert_eq!(m.images, 6);
    assert!((m.accuracy - 4.0 / 6.0).abs() < 1e-6);
    assert_eq!(m.confusion, vec![vec![1, 1, 0], vec![0, 2, 0], vec![1, 0, 1]]);
    // cat: predicted twice (1 right) → P 0.5, R 0.5; dog: predicted 3 times (2 right) → P 2/3, R 1;
    // fox: predicted once (right) → P 1, R 0.5.
    let expected = [(0.5, 0.5), (2.0 / 3.0, 1.0), (1.0, 0.5)];
    for (c, (p, r)) in m.classes.iter().zip(expected) {
        assert!((c.precision - p).abs() < 1e-6 && (c.recall - r).abs() < 1e-6, "{c:?}");
        assert!((c.f1 - 2.0 * p * r / (p + r)).abs() < 1e-6);
        assert_eq!(c.support, 2);
    }
    let macro_f1 = m.classes.iter().map(|c| c.f1).sum::<f32>() / 3.0;
    assert!((m.macro_f1 - macro_f1).abs() < 1e-6);

    // Mistakes, most confident first.
    let mistakes: Vec<(&str, &str, &str)> =
        m.misclassified.iter().map(|x| (x.name.as_str(), x.truth.as_str(), x.predicted.as_str())).collect();
    assert_eq!(mistakes, [("img1.jpg", "cat", "dog"), ("img4.jpg", "fox", "cat")]);
    assert!((m.misclassified[0].confidence - 0.7).abs() < 1e-6);

    let table = m.table();
    assert!(table.contains("accuracy 66.67% on 6 images"), "{table}");
    assert!(table.contains("img4.jpg: fox predicted as cat (60.0%)"), "{table}");
    let header = table.lines().find(|l| l.contains("cat") && l.contains("dog") && l.contains("fox")).unwrap();
    assert!(header.trim_start().starts_with("cat"), "confusion columns are headed by class: {table}");
}

#[test]
fn a_class_never_predicted_has_zero_precision_not_nan() {
    let labels: Vec<String> = ["a", "b"].iter().map(|s| s.to_string()).collect();
    let m = Metrics::compute(&labels, &[0, 1], &[vec![0.9, 0.1], vec![0.8, 0.2]], &["x".into(), "y".into()]);
    assert_eq!(m.classes[1].precision, 0.0);
    assert_eq!(m.classes[1].f1, 0.0);
    assert!(m.macro_f1.is_finite());
}
