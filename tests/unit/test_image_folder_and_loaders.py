"""Image-folder dataset (layout, preprocessing geometry, VOC/CSV boxes, bad files) and model loaders."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from pathatlas.attribution.data.base import SampleError
from pathatlas.attribution.data.image_folder import ImageFolderDataset
from pathatlas.attribution.models.loaders import entrypoint_model, torchscript_model, torchvision_model

VOC = """<annotation><filename>{stem}</filename><size><width>100</width><height>50</height></size>
<object><name>n1</name><bndbox><xmin>11</xmin><ymin>6</ymin><xmax>60</xmax><ymax>40</ymax></bndbox></object>
<object><name>n1</name><bndbox><xmin>1</xmin><ymin>1</ymin><xmax>10</xmax><ymax>10</ymax></bndbox></object>
</annotation>"""


@pytest.fixture
def folder(tmp_path):
    root = tmp_path / "images"
    for cls in ("b_cat", "a_dog"):
        (root / cls).mkdir(parents=True)
    Image.fromarray(np.full((50, 100, 3), 200, np.uint8)).save(root / "a_dog" / "wide.png")
    Image.fromarray(np.full((40, 40), 90, np.uint8)).save(root / "b_cat" / "grey.jpg")
    Image.fromarray(np.full((30, 30, 4), 255, np.uint8), "RGBA").save(root / "b_cat" / "alpha.PNG")
    (root / "b_cat" / "notes.txt").write_text("not an image")
    boxes = tmp_path / "boxes" / "a_dog"
    boxes.mkdir(parents=True)
    (boxes / "wide.xml").write_text(VOC.format(stem="wide"))
    return root


def test_ids_labels_and_geometry(folder, tmp_path):
    ds = ImageFolderDataset(folder, resize=20, crop=16, boxes=tmp_path / "boxes")
    assert [ds.sample_id(i) for i in range(len(ds))] == ["a_dog/wide.png", "b_cat/alpha.PNG", "b_cat/grey.jpg"]
    assert [ds.label(i) for i in range(3)] == [0, 1, 1] and ds.class_names == ["a_dog", "b_cat"]
    sample = ds.load(0)
    assert sample.image.shape == (3, 16, 16) and sample.image.dtype == np.float32
    assert sample.image.max() == pytest.approx(200 / 255, abs=1e-6)
    # 100x50 -> 40x20 (scale 0.4), centre crop 16: left = 12, top = 2.
    # VOC (11, 6, 60, 40) 1-based inclusive -> (10, 5, 60, 40) -> (4-12, 2-2, 24-12, 16-2) -> clipped.
    np.testing.assert_allclose(sample.boxes, [[0, 0, 12, 14]], atol=1e-5)
    assert ds.load(1).boxes.shape == (0, 4) and ds.load(2).image.shape == (3, 16, 16)


def test_csv_boxes_and_class_index(folder, tmp_path):
    csv = tmp_path / "boxes.csv"
    csv.write_text("id,x0,y0,x1,y1\nb_cat/grey.jpg,0,0,40,20\nb_cat/grey.jpg,10,10,20,20\n")
    ds = ImageFolderDataset(folder, resize=None, crop=20, boxes=csv, class_index={"a_dog": 207, "b_cat": 281})
    assert ds.label(2) == 281
    np.testing.assert_allclose(ds.load(2).boxes, [[0, 0, 20, 10], [0, 0, 10, 10]])
    csv.write_text("id,x0,y0,x1,y1\nb_cat/grey.jpg,0,zero,40,20\n")  # a bad row quarantines its sample only
    ds = ImageFolderDataset(folder, crop=20, boxes=csv)
    with pytest.raises(SampleError, match=r"sample 'b_cat/grey.jpg': box CSV .*boxes.csv, row 2"):
        ds.load(2)
    assert ds.load(0).boxes.shape == (0, 4)
    csv.write_text("image,x0,y0,x1,y1\n")  # a wrong header is a configuration error
    with pytest.raises(ValueError, match="needs the header id,x0,y0,x1,y1"):
        ImageFolderDataset(folder, crop=20, boxes=csv)


def test_bad_inputs_fail_clearly(folder, tmp_path):
    (folder / "a_dog" / "broken.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    ds = ImageFolderDataset(folder, resize=20, crop=16)
    idx = [ds.sample_id(i) for i in range(len(ds))].index("a_dog/broken.jpg")
    with pytest.raises(SampleError, match=r"sample 'a_dog/broken.jpg': cannot decode image"):
        ds.load(idx)
    bad_xml = tmp_path / "badxml"
    bad_xml.mkdir()
    (bad_xml / "wide.xml").write_text("<annotation><object>")
    ds = ImageFolderDataset(folder, crop=16, boxes=bad_xml)  # the build goes on: only that sample fails
    with pytest.raises(SampleError, match="sample 'a_dog/wide.png': malformed VOC box file .*wide.xml"):
        ds.load(idx + 1)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        ImageFolderDataset(tmp_path / "nowhere")
    with pytest.raises(ValueError, match="class_index has no entry"):
        ImageFolderDataset(folder, crop=16, class_index={"a_dog": 0})


def test_torchvision_weights_round_trip(tmp_path):
    import torchvision

    net = torchvision.models.resnet18(num_classes=10).eval()
    path = tmp_path / "r18.pth"
    torch.save({"state_dict": {f"module.{k}": v for k, v in net.state_dict().items()}}, path)
    model = torchvision_model("resnet18", path, num_classes=10, mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))
    x = torch.rand(2, 3, 32, 32)
    torch.testing.assert_close(model(x), net((x - 0.5) / 0.25))
    with pytest.raises(ValueError, match="unknown torchvision architecture 'resnet181'.*resnet18"):
        torchvision_model("resnet181", path)
    with pytest.raises(ValueError, match="do not fit resnet34: missing"):
        torchvision_model("resnet34", path, num_classes=10)


def test_torchscript_and_entrypoint(tmp_path, monkeypatch):
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 3)).eval()
    torch.jit.script(net).save(str(tmp_path / "net.pt"))
    x = torch.rand(2, 3, 2, 2)
    torch.testing.assert_close(torchscript_model(tmp_path / "net.pt")(x), net(x))
    (tmp_path / "mymodels.py").write_text(
        "import torch\ndef build(width=4):\n    return torch.nn.Linear(width, 2)\ndef wrong():\n    return 3\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    assert entrypoint_model("mymodels:build", {"width": 5})(torch.rand(1, 5)).shape == (1, 2)
    with pytest.raises(TypeError, match="'mymodels:wrong' returned int, not a torch.nn.Module"):
        entrypoint_model("mymodels:wrong")
    with pytest.raises(ValueError, match="cannot be loaded"):
        entrypoint_model("mymodels:absent")
