import gzip
import os
import struct

import numpy as np
import pytest
import torch
from PIL import Image

from faststeal.data import (
    DataError,
    InfiniteBatches,
    fit_images,
    load_dataset,
    load_fashion_mnist,
    read_idx,
    to_float,
    to_uint8,
)


def write_idx(path, arr):
    header = bytes([0, 0, 0x08, arr.ndim]) + struct.pack(">" + "I" * arr.ndim, *arr.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + arr.astype(np.uint8).tobytes())


@pytest.fixture
def tiny_fmnist(tmp_path, monkeypatch):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (20, 28, 28), dtype=np.uint8)
    labels = np.arange(20, dtype=np.uint8) % 10
    for prefix in ("train", "t10k"):
        write_idx(tmp_path / f"{prefix}-images-idx3-ubyte.gz", images)
        write_idx(tmp_path / f"{prefix}-labels-idx1-ubyte.gz", labels)
    monkeypatch.setenv("FASHION_MNIST_DIR", str(tmp_path))
    return images, labels


def test_idx_round_trip_and_fashion_mnist_split(tiny_fmnist):
    images, labels = tiny_fmnist
    got, lab = load_fashion_mnist("test")
    assert np.array_equal(got, images) and np.array_equal(lab, labels)


def test_truncated_idx_names_the_file(tmp_path):
    path = tmp_path / "x-idx3-ubyte"
    path.write_bytes(bytes([0, 0, 8, 3]) + struct.pack(">III", 5, 28, 28) + b"\0" * 100)
    with pytest.raises(DataError, match="x-idx3-ubyte.*truncated"):
        read_idx(path)


def test_missing_fashion_mnist_says_how_to_install(tmp_path, monkeypatch):
    monkeypatch.setenv("FASHION_MNIST_DIR", str(tmp_path))
    with pytest.raises(DataError, match="apt-get install dataset-fashion-mnist"):
        load_dataset("fashion-mnist")


def test_fashion_mnist_padded_to_32_keeps_pixels_and_class_subset(tiny_fmnist):
    images, labels = tiny_fmnist
    ds = load_dataset("fashion-mnist", resolution=32, classes="3,7")
    keep = np.isin(labels, [3, 7])
    assert ds.images.shape == (keep.sum(), 1, 32, 32) and ds.images.dtype == torch.uint8
    assert torch.equal(ds.images[:, 0, 2:30, 2:30], torch.from_numpy(images[keep]))
    assert int(ds.images[:, :, :2].sum()) == 0
    assert set(ds.labels.tolist()) == {3, 7}


def test_real_fashion_mnist_if_installed():
    import os
    if not os.path.exists("/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz"):
        pytest.skip("dataset-fashion-mnist not installed")
    ds = load_dataset("fashion-mnist:test", resolution=64, channels=3)
    assert ds.images.shape == (10000, 3, 64, 64)
    assert torch.equal(ds.images[:, 0], ds.images[:, 2])


def test_image_folder_grey_and_rgb_with_class_subfolders(tmp_path):
    rng = np.random.default_rng(1)
    for cls in ("cats", "dogs"):
        (tmp_path / cls).mkdir()
        for i in range(3):
            Image.fromarray(rng.integers(0, 256, (40, 40, 3), dtype=np.uint8)).save(tmp_path / cls / f"{i}.png")
    Image.fromarray(rng.integers(0, 256, (40, 40), dtype=np.uint8)).save(tmp_path / "dogs" / "grey.jpg")
    ds = load_dataset(str(tmp_path), resolution=32, channels=3)
    assert ds.images.shape == (7, 3, 32, 32)
    assert ds.labels.tolist() == [0, 0, 0, 1, 1, 1, 1]
    assert len(load_dataset(str(tmp_path), resolution=32, classes=[1])) == 4


def test_corrupt_image_and_empty_folder_errors_name_the_file(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="empty: no images found"):
        load_dataset(str(tmp_path / "empty"))
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    with pytest.raises(DataError, match="broken.png: cannot decode"):
        load_dataset(str(bad))


def test_array_files_layouts_and_errors(tmp_path):
    nhwc = np.random.default_rng(2).integers(0, 256, (5, 32, 32, 3), dtype=np.uint8)
    np.save(tmp_path / "a.npy", nhwc)
    ds = load_dataset(str(tmp_path / "a.npy"))
    assert torch.equal(ds.images, torch.from_numpy(nhwc).permute(0, 3, 1, 2))
    np.savez(tmp_path / "b.npz", images=nhwc[..., 0])
    assert load_dataset(str(tmp_path / "b.npz"), resolution=32).images.shape == (5, 1, 32, 32)
    np.save(tmp_path / "f.npy", nhwc.astype(np.float32))
    with pytest.raises(DataError, match="f.npy: dtype is float32"):
        load_dataset(str(tmp_path / "f.npy"))
    np.save(tmp_path / "s.npy", np.zeros((4, 32, 16), np.uint8))
    with pytest.raises(DataError, match="s.npy: shape"):
        load_dataset(str(tmp_path / "s.npy"))
    (tmp_path / "junk.npy").write_bytes(b"garbage")
    with pytest.raises(DataError, match="junk.npy"):
        load_dataset(str(tmp_path / "junk.npy"))
    with pytest.raises(DataError, match="no such file"):
        load_dataset(str(tmp_path / "missing"))


def test_fit_images_resize_and_channels():
    x = torch.full((2, 3, 50, 40), 200, dtype=torch.uint8)
    y = fit_images(x, 32, 1)
    assert y.shape == (2, 1, 32, 32) and int(y.min()) == int(y.max()) == 200


def test_float_uint8_round_trip():
    x = torch.arange(256, dtype=torch.uint8).view(1, 1, 16, 16)
    f = to_float(x)
    assert float(f.min()) == -1.0 and float(f.max()) == 1.0
    assert torch.equal(to_uint8(f), x)


def test_batches_are_seeded_and_resumable():
    from faststeal.data import ImageSet
    data = ImageSet(torch.arange(10, dtype=torch.uint8).view(10, 1, 1, 1).repeat(1, 1, 8, 8), None, "x", "t")
    a = InfiniteBatches(data, 3, seed=5)
    seq = [next(a) for _ in range(7)]
    b = InfiniteBatches(data, 3, seed=5)
    for _ in range(4):
        next(b)
    c = InfiniteBatches(data, 3, seed=5)
    c.load_state(b.state())
    assert all(torch.equal(x, y) for x, y in zip(seq[4:], [next(c) for _ in range(3)]))
    with pytest.raises(DataError, match="lower --batch"):
        InfiniteBatches(data, 11, seed=0)


def test_pair_batches_keep_each_image_with_its_code():
    from faststeal.data import ImageSet
    images = torch.arange(10, dtype=torch.uint8).view(10, 1, 1, 1).repeat(1, 1, 8, 8)
    codes = torch.arange(10, dtype=torch.float64).view(10, 1).repeat(1, 4)
    pairs = InfiniteBatches(ImageSet(images, None, "x", "t", codes=codes), 3, seed=5, pairs=True)
    plain = InfiniteBatches(ImageSet(images, None, "x", "t", codes=codes), 3, seed=5)
    for _ in range(5):
        x, z = next(pairs)
        assert torch.equal(x, next(plain)) and z.dtype == torch.get_default_dtype()
        assert torch.equal(to_uint8(x)[:, 0, 0, 0].double(), z[:, 0].double())
    with pytest.raises(DataError, match="no latent codes"):
        InfiniteBatches(ImageSet(images, None, "x", "t"), 3, seed=5, pairs=True)


def test_16_bit_grey_png_is_one_grey_channel_for_training_and_for_fid(tmp_path):
    """One decoder: a 16-bit grey file is 1-channel, scaled (not clipped) to 8 bits, by both readers."""
    from faststeal.metrics.sources import FolderSource

    wide = np.arange(0, 65536, 65536 // 256, dtype=np.uint16).reshape(16, 16)
    Image.fromarray(wide).save(tmp_path / "a16.png")
    Image.fromarray((wide >> 8).astype(np.uint8)).save(tmp_path / "b8.png")
    ds = load_dataset(str(tmp_path))
    assert ds.images.shape == (2, 1, 16, 16)
    torch.testing.assert_close(ds.images[0].int(), ds.images[1].int(), atol=1, rtol=0)
    assert int(ds.images[0].max()) >= 254            # scaled, not clipped at 255 by the low bits
    for f in (tmp_path / "a16.png", tmp_path / "b8.png"):
        assert torch.equal(FolderSource.read(f)[0], ds.images[0 if f.name == "a16.png" else 1])


def test_folder_fingerprint_sees_every_file(tmp_path):
    rng = np.random.default_rng(3)
    for i in range(300):
        Image.fromarray(rng.integers(0, 256, (8, 8), dtype=np.uint8)).save(tmp_path / f"{i:03d}.png")
    before = load_dataset(str(tmp_path)).fingerprint
    Image.fromarray(rng.integers(0, 256, (8, 8), dtype=np.uint8)).save(tmp_path / "299.png")
    os.utime(tmp_path / "299.png", ns=(1, 1))
    assert load_dataset(str(tmp_path)).fingerprint != before


def test_array_fingerprint_follows_content(tmp_path):
    a = np.random.default_rng(4).integers(0, 256, (6, 8, 8), dtype=np.uint8)
    np.save(tmp_path / "x.npy", a)
    first = load_dataset(str(tmp_path / "x.npy")).fingerprint
    b = a.copy()
    b[5, 7, 7] ^= 1
    np.save(tmp_path / "x.npy", b)
    os.utime(tmp_path / "x.npy", ns=(1, 1))
    assert load_dataset(str(tmp_path / "x.npy")).fingerprint != first
