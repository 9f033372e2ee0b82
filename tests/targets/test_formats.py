import pytest
import torch
from foreign_generators import NZ, make_dcgan

from faststeal.targets import Hints, TargetError, detect_kind, open_target

FORMATS = ("python", "torchscript", "export", "onnx")


@pytest.mark.parametrize("kind", FORMATS)
def test_every_format_gives_the_eager_modules_images(dcgan_specs, kind):
    target = open_target(dcgan_specs[kind])
    assert target.kind == kind and target.in_process and not target.has_discriminator
    assert target.arch == kind                   # a foreign file's architecture is unknown: its format stands in
    assert (target.resolution, target.channels, target.latent_dim) == (64, 3, NZ)
    assert target.probed["latent_shape"] == "(N, d, 1, 1)" and target.probed["output_range"] == "-1,1"
    z = torch.randn(5, NZ, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        eager = make_dcgan()(z.view(5, NZ, 1, 1))
        got = target.generator(z)
    assert got.dtype == torch.float32 and got.shape == (5, 3, 64, 64)
    assert (got - eager).abs().max() <= 1e-5


def test_detect_kind_reads_the_file_not_the_name(dcgan_specs, tmp_path):
    for kind in ("torchscript", "export", "onnx"):
        assert detect_kind(dcgan_specs[kind]) == kind
    renamed = tmp_path / "model.bin"
    renamed.write_bytes(open(dcgan_specs["export"], "rb").read())
    assert detect_kind(renamed) == "export"
    assert detect_kind("builtin:pggan-fmnist32") == "faststeal" and detect_kind("http://h:1") == "http"


def test_model_id_follows_the_bytes_and_the_declared_range(dcgan_specs, tmp_path):
    a = open_target(dcgan_specs["torchscript"])
    assert open_target(dcgan_specs["torchscript"]).model_id == a.model_id
    other = tmp_path / "other.ts"
    torch.jit.save(torch.jit.trace(make_dcgan(seed=1), torch.randn(2, NZ, 1, 1)), other)
    assert open_target(str(other)).model_id != a.model_id
    # declaring another output range changes the images, so the id changes too
    assert open_target(dcgan_specs["torchscript"], hints=Hints(output_range="0,1")).model_id != a.model_id


def test_flat_codes_and_unit_range_are_probed(tmp_path):
    from foreign_generators import UnitRangeMLP

    path = tmp_path / "mlp.ts"
    torch.jit.save(torch.jit.script(UnitRangeMLP()), path)
    target = open_target(str(path))
    assert target.latent_dim == 24 and target.probed["latent_shape"] == "(N, d)"
    assert target.probed["output_range"] == "0,1" and (target.resolution, target.channels) == (32, 1)
    z = torch.randn(4, 24)
    with torch.no_grad():
        assert torch.allclose(target.generator(z), UnitRangeMLP()(z) * 2 - 1, atol=1e-6)


def test_a_class_conditional_generator_gets_uniform_labels_inside_its_codes(tmp_path):
    from foreign_generators import Conditional

    path = tmp_path / "cond.ts"
    torch.jit.save(torch.jit.script(Conditional()), path)
    with pytest.raises(TargetError, match="--num-classes"):
        open_target(str(path), hints=Hints(latent_dim=8))
    target = open_target(str(path), hints=Hints(num_classes=10))
    assert target.latent_dim == 9 and target.probed["num_classes"] == 10      # 8 code + 1 label coordinate
    from faststeal.targets.foreign import labels_for

    labels = labels_for(torch.randn(20_000, generator=torch.Generator().manual_seed(0)),
                        open_target(str(path), hints=Hints(num_classes=10)).generator.layout)
    counts = torch.bincount(labels, minlength=10).float()
    assert counts.min() > 1800 and counts.max() < 2200                      # uniform under the normal prior


def test_onnx_exported_at_a_fixed_batch_is_called_in_that_batch(tmp_path):
    import warnings

    path = tmp_path / "fixed.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(make_dcgan(), (torch.randn(1, NZ, 1, 1),), path, dynamo=False)
    target = open_target(str(path))
    assert target.probed["fixed_batch"] == 1
    z = torch.randn(3, NZ)
    with torch.no_grad():
        assert (target.generator(z) - make_dcgan()(z.view(3, NZ, 1, 1))).abs().max() <= 1e-5


@pytest.mark.parametrize("spec, message", [
    ("nope.pt", "no such file"),
    ("py:nope.py:make", "no such file"),
    ("py:{dcgan}:missing", "has no attribute"),
    ("py:{dcgan}:NOT_CALLABLE", "not a factory"),
    ("py:{dcgan}:make_odd_size", "40x40 images"),
    ("py:{dcgan}:make_nan", "NaN or infinite"),
    ("py:faststeal_no_such_module:make", "cannot import"),
])
def test_bad_targets_fail_in_one_line(spec, message):
    from pathlib import Path

    spec = spec.format(dcgan=Path(__file__).parents[1] / "foreign_generators.py")
    with pytest.raises(TargetError, match=message) as info:
        open_target(spec)
    assert "\n" not in str(info.value)


def test_unknown_files_and_state_dicts_are_refused_with_what_to_do(tmp_path):
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a model at all")
    with pytest.raises(TargetError, match="not a generator format"):
        open_target(str(junk))
    sd = tmp_path / "weights.pt"
    torch.save(make_dcgan().state_dict(), sd)
    with pytest.raises(TargetError, match="state dict alone is not a generator"):
        open_target(str(sd))


def test_a_wrong_latent_dim_names_the_flag(dcgan_specs):
    with pytest.raises(TargetError, match="--latent-dim"):
        open_target(dcgan_specs["torchscript"], hints=Hints(latent_dim=7))


def test_values_far_outside_the_declared_range_are_refused():
    from pathlib import Path

    spec = f"py:{Path(__file__).parents[1] / 'foreign_generators.py'}:make_byte_range"
    target = open_target(spec)
    assert target.probed["output_range"] == "0,255"
    with torch.no_grad():
        images = target.generator(torch.randn(4, target.latent_dim))
    assert images.min() >= -1 and images.max() <= 1 and images.std() > 0.1
    with pytest.raises(TargetError, match="far outside the range -1,1 declared"):
        open_target(spec, hints=Hints(output_range="-1,1"))


def test_a_faststeal_target_names_its_architecture():
    assert [open_target(f"builtin:{a}-fmnist32").arch for a in ("pggan", "sngan")] == ["pggan", "sngan"]


def test_builtin_targets_refuse_foreign_hints():
    with pytest.raises(TargetError, match="declares its own shape"):
        open_target("builtin:pggan-fmnist32", hints=Hints(latent_dim=4))


def test_a_module_in_this_process_is_a_target_too():
    model = make_dcgan()
    target = open_target(model)
    assert target.kind == "python" and target.latent_dim == NZ and target.in_process
    assert open_target(make_dcgan()).model_id == target.model_id            # same weights, same id
    assert open_target(make_dcgan(seed=1)).model_id != target.model_id
