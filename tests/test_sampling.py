import pytest
import torch

from faststeal.checkpoint import load_generator
from faststeal.evaluate import generator_stats
from faststeal.metrics.sources import GeneratorSource, open_source
from faststeal.sampling import SAMPLE_SEED, generate, latent_batches


def test_latents_do_not_depend_on_the_batch_size():
    whole = torch.cat(list(latent_batches(2500, 8, 2500, seed=3)))
    for batch in (1, 7, 1024, 1500):
        assert torch.equal(torch.cat(list(latent_batches(2500, 8, batch, seed=3))), whole)
    assert not torch.equal(torch.cat(list(latent_batches(2500, 8, 100, seed=4))), whole)


def test_fid_source_and_evaluation_sample_the_same_images(tiny_target):
    """`faststeal fid CKPT ...` and extract's evaluation draw the same images from a checkpoint."""
    gen = load_generator(tiny_target)
    images = generate(gen, 300, batch=64)
    source = open_source(str(tiny_target))
    assert isinstance(source, GeneratorSource) and source.seed == SAMPLE_SEED
    streamed = torch.cat(list(source.uint8_batches(300, 50, "cpu")))
    assert torch.equal(streamed, images)
    assert torch.equal(generate(gen, 300, batch=300), images)


def test_a_generator_producing_nan_is_refused(tiny_target):
    gen = load_generator(tiny_target)
    with torch.no_grad():
        next(gen.parameters()).fill_(float("nan"))
    with pytest.raises(ValueError, match="NaN or infinite"):
        generate(gen, 4)
    with pytest.raises(ValueError, match="NaN or infinite"):
        generator_stats(gen, 4, progress=False)


def test_codes_go_to_the_generators_own_device(tiny_target, monkeypatch):
    # the fidelity probe sampled a CUDA generator with CPU codes; codes now follow the weights by default
    from faststeal import sampling

    gen = load_generator(tiny_target)
    real = sampling.generator_device
    assert real(gen) == torch.device("cpu") and real(torch.nn.Identity()) == torch.device("cpu")
    seen = []
    monkeypatch.setattr(sampling, "generator_device", lambda g: seen.append(g) or torch.device("cpu"))
    assert generate(gen, 3, seed=1).shape[0] == 3 and seen == [gen]
