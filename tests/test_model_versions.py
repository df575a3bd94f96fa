"""Saved models: the current one (numeric embeddings, an ensemble) loads in a new process in Keras safe
mode and predicts exactly as it did; models that earlier taxifare versions saved still load and predict,
runs of an earlier preprocessor version too, handed the features they were trained on; a model whose
layers this version does not know is refused in one line."""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
import zipfile

import numpy as np
import pandas as pd
import pytest

from taxifare.core.errors import InputError
from taxifare.model.network import build_model, numeric_columns, predict_fares, quantile_knots
from taxifare.model.saved import load_model
from taxifare.model.spec import FLAT_FARES, ModelSpec
from taxifare.rides.features import DISTANCE_SCALE_KM, FEATURE_NAMES, days_feature, ride_features
from taxifare.serving.predict import REFERENCE_RIDE
from taxifare.training.loop import train
from tests.conftest import REPO, assert_clean_error, cli_env, run_cli
from tests.training_data import processed_demo, with_registry

FEATURES = len(FEATURE_NAMES)
# Past the eager path of predict_fares, so that `predict_on_batch` is covered too.
ROWS = 1500


def _features(features: int = FEATURES) -> np.ndarray:
    return np.random.default_rng(3).normal(size=(ROWS, features)).astype(np.float32)


def _trained(spec: ModelSpec, features: int = FEATURES):
    """A model of `spec` after a few steps, so that every weight has left its initial value."""
    model = build_model(spec, 0.01, 1, np.zeros(features), np.ones(features), 12.0)
    rows = _features(features)
    model.fit(rows, (12 + 3 * rows[:, 0])[:, None], batch_size=64, epochs=1, verbose=0)
    return model


def _earlier_version_model():
    """A model as taxifare saved them before the numeric embeddings (a Sequential of Keras' own layers), trained a little."""
    import keras
    from keras import layers

    keras.utils.set_random_seed(2)
    stack = [keras.Input((FEATURES,)), layers.Normalization(mean=np.zeros(FEATURES), variance=np.ones(FEATURES), name="standardize")]
    stack += [layers.Dense(16, activation="relu", name="hidden_1"), layers.Dropout(0.1, name="dropout_1")]
    model = keras.Sequential([*stack, layers.Dense(1, name="fare")], name="taxifare")
    model.compile(loss=keras.losses.Huber(delta=1.0), optimizer=keras.optimizers.Adam(0.001), metrics=["mae"])
    rows = _features()
    model.fit(rows, 12 + 3 * rows[:, 0], batch_size=64, epochs=1, verbose=0)
    return model


def _predicted_in_a_new_process(paths, rows_path) -> list[np.ndarray]:
    """Predictions of each model file in `paths` by one fresh Python process, through taxifare's load_model."""
    script = (
        "import sys, numpy as np; from taxifare.model.network import predict_fares; from taxifare.model.saved import load_model; rows = np.load(sys.argv[1]); "
        "[np.save(path + '.npy', predict_fares(load_model(path), rows)) for path in sys.argv[2:]]"
    )
    done = subprocess.run([sys.executable, "-c", script, str(rows_path), *map(str, paths)], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    return [np.load(f"{path}.npy") for path in paths]


def test_saved_models_of_this_and_earlier_versions_predict_the_same_in_a_new_process(tmp_path):
    single, ensemble = (_trained(ModelSpec((16, 8), 0.1, "mae", members=members)) for members in (1, 3))
    assert single.get_layer("numeric_embedding") and ensemble.get_layer("member_3_numeric_embedding")
    kinds = [type(ensemble.get_layer(name)).__name__ for name in ("quantile_normal", "member_3_fare", "member_3_flat_fare")]
    assert kinds == ["QuantileNormal", "DistanceRate", "FlatFare"]
    # The versions before the flat-fare heads; the ensemble of those before the member designs: every member on
    # standardized inputs.
    alike = _trained(ModelSpec((16, 8), 0.1, "huber", members=3, designs=("standardized",), flat_fares=()))
    # The first embeddings' version: no scalars beside them (its saved layer config has no "scalars").
    embeddings_only = _trained(ModelSpec((16, 8), 0.1, "huber", scalars=False, members=1, flat_fares=()))
    earlier = _earlier_version_model()
    rows = _features()
    models = {"single": single, "ensemble": ensemble, "alike": alike, "embeddings_only": embeddings_only, "earlier": earlier}
    for name, model in models.items():
        model.save(tmp_path / f"{name}.keras")
    _with_config_text_replaced(tmp_path / "embeddings_only.keras", ', "scalars": false', "")
    np.save(tmp_path / "rows.npy", rows)
    predicted = _predicted_in_a_new_process([tmp_path / f"{name}.keras" for name in models], tmp_path / "rows.npy")
    for model, fares in zip(models.values(), predicted):
        assert fares.shape == (ROWS,)
        np.testing.assert_array_equal(fares, predict_fares(model, rows))


def test_an_ensemble_trains_each_member_and_predicts_their_mean_or_near_jfk_their_median():
    import keras

    model = _trained(ModelSpec((16, 8), 0.1, "huber", members=3))
    rows = np.abs(_features()[:50])
    near = np.arange(50) % 2 == 0
    for column in ("pickup_distance_jfk", "dropoff_distance_jfk"):
        rows[:, FEATURE_NAMES.index(column)] = 0.05  # 5 km
    rows[near, FEATURE_NAMES.index("dropoff_distance_jfk")] = 0.01
    assert np.asarray(model(rows, training=True)).shape == (50, 3)  # what the loss sees: every member's fare
    members = np.asarray(keras.Model(model.inputs[0], model.get_layer("members").output)(rows, training=False))
    assert np.ptp(members, axis=1).min() > 0  # members of their own, not copies
    predicted = np.asarray(keras.Model(model.inputs[0], model.get_layer("member_mean").output)(rows, training=False))[:, 0]
    np.testing.assert_allclose(predicted[~near], members[~near].mean(axis=1), rtol=1e-6)
    np.testing.assert_allclose(predicted[near], np.median(members[near], axis=1), rtol=1e-6)
    assert np.abs(members[near].mean(axis=1) - predicted[near]).min() > 1e-4
    # Without flat-fare heads, the mean everywhere.
    alike = _trained(ModelSpec((16, 8), 0.1, "huber", members=3, flat_fares=(), meter_steps=False))
    members = np.asarray(keras.Model(alike.inputs[0], alike.get_layer("members").output)(rows, training=False))
    np.testing.assert_allclose(predict_fares(alike, rows), members.mean(axis=1), rtol=1e-6)


def test_numeric_embeddings_and_their_gradients_are_those_of_the_plr_formula():
    """ReLU(W_f [sin(2 pi c_f x), cos(2 pi c_f x)] + b_f) per numeric feature f, then the columns passed
    through: the layer's own layout and gradient (which reuses the forward sines and cosines) must give what
    automatic differentiation of the plain formula gives."""
    import math

    import tensorflow as tf

    from taxifare.model.embeddings import PeriodicEmbedding

    numeric, features = [0, 2, 3], 5
    layer = PeriodicEmbedding(numeric, frequencies=4, dims=3, sigma=0.5, scalars=True)
    rows = tf.constant(np.random.default_rng(4).normal(size=(7, features)).astype(np.float32))
    layer.build(rows.shape)

    def plain(inputs):
        angles = 2 * math.pi * tf.gather(inputs, numeric, axis=1)[:, :, None] * layer.frequencies[None]
        periodic = tf.concat([tf.sin(angles), tf.cos(angles)], axis=-1)
        embedded = tf.nn.relu(tf.einsum("bfp,fpd->bfd", periodic, layer.kernel) + layer.bias)
        return tf.concat([tf.reshape(embedded, (len(rows), -1)), inputs], axis=1)

    weights = rows * tf.range(1.0, features + 1)[None]  # a loss that weighs every output differently
    gradients = []
    for embed in (layer, plain):
        with tf.GradientTape() as tape:
            tape.watch(rows)
            output = embed(rows)
            loss = tf.reduce_sum(output * tf.tile(weights, [1, output.shape[1] // features + 1])[:, : output.shape[1]])
        gradients.append([np.asarray(g) for g in tape.gradient(loss, [rows, *layer.trainable_weights])])
        np.testing.assert_allclose(np.asarray(output), np.asarray(plain(rows)), rtol=1e-5, atol=1e-6)
    for own, reference in zip(*gradients):
        np.testing.assert_allclose(own, reference, rtol=1e-4, atol=1e-5)
    assert all(np.abs(reference).max() > 0 for reference in gradients[1])


def test_members_take_turns_at_the_designs_and_a_single_network_is_of_the_first():
    spec = ModelSpec((8,), 0.0, "mae", members=5)
    assert spec.member_designs() == ["standardized", "quantile", "distance-rate", "standardized", "quantile"]
    assert ModelSpec((8,), 0.0, "mae", members=1).member_designs() == ["standardized"]
    assert "5 networks (2 standardized, 2 quantile, 1 distance-rate)" in spec.describe()
    # The second round of designs draws its frequencies at another scale.
    assert spec.member_scales() == [0.25, 0.25, 0.25, 0.75, 0.75]
    model = build_model(spec, 0.01, 1, np.zeros(FEATURES), np.ones(FEATURES), 10.0)
    assert [model.get_layer(f"member_{member}_numeric_embedding").sigma for member in range(1, 6)] == spec.member_scales()


def test_quantile_members_see_normal_scores_of_the_training_quantiles():
    import keras

    from taxifare.model.embeddings import normal_scores

    rows = np.random.default_rng(5).lognormal(size=(4000, FEATURES)).astype(np.float32)
    rows[:, 1] = np.round(rows[:, 1])  # a discrete feature: many knots coincide
    numeric = numeric_columns(FEATURES)
    knots = quantile_knots(rows, intervals=8)
    np.testing.assert_allclose(knots[:, 4], np.median(rows[:, numeric], axis=0), rtol=1e-6)
    model = build_model(ModelSpec((8,), 0.0, "mae", members=2), 0.01, 1, rows.mean(0), rows.var(0), 10.0, knots)
    scores = keras.Model(model.inputs[0], model.get_layer("quantile_normal").output)
    probes = np.zeros((4, FEATURES), dtype=np.float32)
    probes[:, numeric] = np.vstack([knots[:, 0], knots[:, 4], knots[:, 6], knots[:, 8] * 10])
    expected = np.array(normal_scores(8))[[0, 4, 6, 8]]
    got = np.asarray(scores(probes))[:, : len(numeric)]
    # Column 1's knots coincide in runs: a value on such a knot reads the score of the run's first level.
    np.testing.assert_allclose(np.delete(got, 1, axis=1), np.repeat(expected[:, None], len(numeric) - 1, axis=1), atol=1e-5)
    # Scores rise with the value and stop at the outermost knots (the last probe is 10x the largest value).
    assert np.all(np.diff(got, axis=0) >= 0) and np.allclose(got[-1], expected[-1])


def test_a_distance_rate_member_prices_base_plus_rate_times_the_distance_in_kilometres():
    import keras

    features = len(FEATURE_NAMES)
    model = build_model(ModelSpec((8,), 0.0, "mae", members=3), 0.01, 1, np.zeros(features), np.ones(features), 10.0)
    rows = np.random.default_rng(6).uniform(0, 0.2, size=(20, features)).astype(np.float32)
    priced = np.asarray(keras.Model(model.inputs[0], model.get_layer("member_3_base_and_rate").output)(rows))
    fares = np.asarray(keras.Model(model.inputs[0], model.get_layer("member_3_fare").output)(rows))[:, 0]
    kilometres = rows[:, FEATURE_NAMES.index("manhattan_distance")] * DISTANCE_SCALE_KM
    np.testing.assert_allclose(fares, priced[:, 0] + priced[:, 1] * kilometres, rtol=1e-5)


def test_a_flat_fare_head_moves_only_the_fares_of_rides_near_jfk_towards_its_learned_fares():
    import keras

    features = len(FEATURE_NAMES)
    model = build_model(ModelSpec((8,), 0.0, "mae", members=2), 0.01, 1, np.zeros(features), np.ones(features), 10.0)
    rows = np.random.default_rng(7).uniform(0.05, 0.3, size=(6, features)).astype(np.float32)
    pickup, dropoff = FEATURE_NAMES.index("pickup_distance_jfk"), FEATURE_NAMES.index("dropoff_distance_jfk")
    rows[0, pickup] = rows[1, dropoff] = 1.5 / DISTANCE_SCALE_KM  # an end 1.5 km from JFK; the others 5 km or more
    rows[2, pickup] = rows[2, dropoff] = 2.5 / DISTANCE_SCALE_KM
    for member in (1, 2):
        layer = model.get_layer(f"member_{member}_flat_fare")
        np.testing.assert_allclose(np.asarray(layer.fares), FLAT_FARES)
        inner = keras.Model(model.inputs[0], [model.get_layer(f"member_{member}_{name}").output for name in ("fare", "flat_fare_logits")])
        fare, logits = (np.asarray(output, dtype=np.float64) for output in inner(rows))
        gate = 1 / (1 + np.exp(-logits[:, 0]))
        choice = np.exp(logits[:, 1:]) / np.exp(logits[:, 1:]).sum(axis=1, keepdims=True)
        near = np.array([1, 1, 0, 0, 0, 0])
        expected = fare[:, 0] + near * gate * (choice @ np.array(FLAT_FARES) - fare[:, 0])
        got = np.asarray(keras.Model(model.inputs[0], layer.output)(rows))[:, 0]
        np.testing.assert_allclose(got, expected, rtol=1e-5)
        assert np.all(np.abs(got[:2] - fare[:2, 0]) > 0.1)
    assert "FlatFare(within 2 km of JFK: a gate towards 6 learned flat fares)" in ModelSpec((8,), 0.0, "mae", members=2).describe()
    assert "FlatFare" not in ModelSpec((8,), 0.0, "mae", members=2, flat_fares=()).describe()


def test_fares_are_given_at_the_meters_nearest_step_of_their_date_except_near_jfk_and_in_training():
    import keras

    model = _trained(ModelSpec((16, 8), 0.0, "mae", members=3))  # no dropout: a call in training is repeatable
    rows = np.abs(_features()[:60])
    for column in ("pickup_distance_jfk", "dropoff_distance_jfk"):
        rows[:, FEATURE_NAMES.index(column)] = 0.05  # 5 km
    near = np.arange(60) % 3 == 0
    rows[near, FEATURE_NAMES.index("pickup_distance_jfk")] = 0.01
    after = np.arange(60) % 2 == 0
    days = [days_feature(dt.datetime(2012, 9, day)) for day in (3, 4)]  # the last day of $0.40 steps, the first of $0.50
    rows[:, FEATURE_NAMES.index("days_since_2009")] = np.where(after, days[1], days[0])
    step = np.where(after, 0.50, 0.40)

    def between_and_stepped(ensemble):
        between = np.asarray(keras.Model(ensemble.inputs[0], ensemble.get_layer("member_mean").output)(rows, training=False), dtype=np.float64)[:, 0]
        return between, 2.50 + np.round((between - 2.50) / step) * step

    between, stepped = between_and_stepped(model)
    predicted = predict_fares(model, rows)
    np.testing.assert_allclose(predicted, np.where(near, between, stepped), atol=1e-4)
    assert np.median(np.abs(predicted - between)[~near]) > 0.05  # they moved
    # Without flat-fare heads, the rides near JFK are on the meter too.
    metered = _trained(ModelSpec((16, 8), 0.0, "mae", members=3, flat_fares=()))
    np.testing.assert_allclose(predict_fares(metered, rows), between_and_stepped(metered)[1], atol=1e-4)
    # What the loss sees: every member's fare, as the members give it.
    members = np.asarray(keras.Model(model.inputs[0], model.get_layer("members").output)(rows, training=True))
    np.testing.assert_array_equal(np.asarray(model(rows, training=True)), members)
    assert "MeterSteps($2.50 + steps of $0.40, of $0.50 from 2012-09-04, not within 2 km of JFK)" in ModelSpec((8,), 0.0, "mae", 3).describe()
    # Without them, the fares between the steps.
    unstepped = _trained(ModelSpec((16, 8), 0.1, "mae", members=3, meter_steps=False))
    assert "meter_steps" not in [layer.name for layer in unstepped.layers] and "MeterSteps" not in ModelSpec((8,), 0.0, "mae", 3, meter_steps=False).describe()


def _with_config_text_replaced(path, old: str, new: str) -> None:
    """Rewrite the model file's config (as JSON text), as another taxifare version would have saved it."""
    with zipfile.ZipFile(path) as archive:
        members = {name: archive.read(name) for name in archive.namelist()}
    config = json.loads(members["config.json"])
    text = json.dumps(config)
    assert old in text
    members["config.json"] = text.replace(old, new).encode()
    with zipfile.ZipFile(path, "w") as archive:
        for name, content in members.items():
            archive.writestr(name, content)


def _with_layer_renamed(path, old: str, new: str) -> None:
    """The config as a later taxifare with a layer class of another name would save it: the class name, and
    the registered name ("taxifare>...") that Keras looks it up by."""
    _with_config_text_replaced(path, f'{old}"', f'{new}"')


def test_a_model_with_a_layer_this_version_does_not_know_is_refused_in_one_line(tmp_path):
    _trained(ModelSpec((8,), 0.0, "huber", 1)).save(tmp_path / "model.keras")
    _with_layer_renamed(tmp_path / "model.keras", "PeriodicEmbedding", "PeriodicEmbeddingV2")
    with pytest.raises(InputError, match=r"model\.keras: the model has layer taxifare>PeriodicEmbeddingV2, which this taxifare .* another version saved it") as caught:
        load_model(tmp_path / "model.keras")
    assert "\n" not in str(caught.value)


def _pred(settings, run_id):
    env = cli_env(settings.local_registry_path.parent, LOCAL_DATA_PATH=str(settings.local_data_path), LOCAL_REGISTRY_PATH=str(settings.local_registry_path))
    return run_cli(settings.local_registry_path.parent, "pred", "--model", run_id, env=env, timeout=120)


def test_a_run_saved_by_an_earlier_version_is_served_by_pred_not_continued_and_an_unknown_layer_is_refused(tmp_path):
    settings = processed_demo(tmp_path, rides=3000)
    settings = with_registry(settings, tmp_path / "registry", chunk_size=1500, epochs=1, batch_size=128, hidden_units=(16,), members=1)
    run = train(settings).run
    _earlier_version_model().save(run.model_path)
    result = _pred(settings, run.run_id)
    assert result.returncode == 0, result.stderr[-2000:]
    assert float(result.stdout) > 0
    with pytest.raises(InputError, match=r"cannot continue run .*an earlier taxifare's \(no (member_1_)?numeric_embedding/frequencies.*without --from") as caught:
        train(settings, from_run=run.run_id)
    assert "\n" not in str(caught.value)

    _trained(ModelSpec((8,), 0.0, "huber", 1)).save(run.model_path)
    _with_layer_renamed(run.model_path, "PeriodicEmbedding", "PeriodicEmbeddingV2")
    assert_clean_error(_pred(settings, run.run_id), 2, "the model has layer taxifare>PeriodicEmbeddingV2", "train a new run")


def test_a_run_of_preprocessor_version_3_predicts_from_the_features_it_was_trained_on(tmp_path):
    """Version 4 appended coordinates to version 3's 73 features: a version-3 run is handed those 73 only."""
    settings = processed_demo(tmp_path, rides=3000)
    settings = with_registry(settings, tmp_path / "registry", chunk_size=1500, epochs=1, batch_size=128, hidden_units=(16,))
    run = train(settings).run
    old = _trained(ModelSpec((16, 8), 0.0, "huber", members=2), features=73)
    old.save(run.model_path)
    params = json.loads((run.path / "params.json").read_text())
    (run.path / "params.json").write_text(json.dumps({**params, "preprocessor_version": 3, "feature_names": list(FEATURE_NAMES[:73])}))
    ride = {name: [value] for name, value in REFERENCE_RIDE.items()}
    ride["pickup_datetime"] = pd.to_datetime(["2013-07-06 17:18:00"])  # " UTC" is the New York wall clock by default
    expected = predict_fares(old, pd.DataFrame(ride_features(pd.DataFrame(ride))).to_numpy(np.float32)[:, :73])[0]
    result = _pred(settings, run.run_id)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == f"{expected:.2f}"

    # Version 3 naming this version's 97 features: no version computed those.
    (run.path / "params.json").write_text(json.dumps({**params, "preprocessor_version": 3}))
    assert_clean_error(_pred(settings, run.run_id), 2, "was trained on preprocessor version 3, but this taxifare applies version 4", "train a new run")
