"""Shards in object storage: a real S3-compatible server (moto's, on 127.0.0.1) read through s3fs, and an HTTP
server for https-style URLs.  Never the internet."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile

import numpy as np
import pytest

import fidkit
from fidkit.errors import BadInputError
from fidkit.data.sources import open_source
from fidkit.data.shards import expand, fingerprint
from helpers import smooth_images, write_folder
from shard_servers import http_server, png, webdataset_tar

pytest.importorskip("s3fs")
pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")
moto_server = pytest.importorskip("moto.server")


@pytest.fixture(scope="module")
def s3_endpoint():
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture
def s3(s3_endpoint, monkeypatch):
    """``(storage_options, client)`` for a fresh bucket ``shards`` on the moto server, test credentials set."""
    import boto3
    for var, value in (("AWS_ACCESS_KEY_ID", "testing"), ("AWS_SECRET_ACCESS_KEY", "testing"),
                       ("AWS_DEFAULT_REGION", "us-east-1")):
        monkeypatch.setenv(var, value)
    client = boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1")
    for b in client.list_buckets().get("Buckets", []):
        for o in client.list_objects_v2(Bucket=b["Name"]).get("Contents", []):
            client.delete_object(Bucket=b["Name"], Key=o["Key"])
        client.delete_bucket(Bucket=b["Name"])
    client.create_bucket(Bucket="shards")
    return {"endpoint_url": s3_endpoint, "skip_instance_cache": True}, client


@pytest.fixture
def images():
    return smooth_images(7, 20, seed=5)


def put_shards(client, images, per_shard=3) -> int:
    count = 0
    for s, start in enumerate(range(0, len(images), per_shard)):
        samples = [(f"s{i:04d}", {"png": png(images[i]), "cls": b"0"})
                   for i in range(start, min(start + per_shard, len(images)))]
        client.put_object(Bucket="shards", Key=f"eval-{s:06d}.tar", Body=webdataset_tar(samples))
        count += 1
    return count


def pixels(source):
    return np.stack([load()[0] for _, load in source.items()])


def test_s3_webdataset_shards_equal_the_folder(s3, images, tmp_path, monkeypatch):
    options, client = s3
    n = put_shards(client, images)
    spec = f"s3://shards/eval-{{000000..{n - 1:06d}}}.tar"
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))   # streaming: no temporary copy of a shard
    source = open_source(spec, storage_options=options)
    got = pixels(source)
    np.testing.assert_array_equal(got, pixels(open_source(write_folder(tmp_path / "folder", images))))
    assert list(scratch.iterdir()) == []
    assert source.shards == [f"s3://shards/eval-{i:06d}.tar" for i in range(n)]
    # the fingerprint is the object's size and ETag, and stamps each of its items
    head = client.head_object(Bucket="shards", Key="eval-000001.tar")
    assert source.fingerprints["s3://shards/eval-000001.tar"] == \
        f"{head['ContentLength']}:etag={head['ETag'].strip(chr(34))}"
    names = [name for name, _ in source.items()]
    assert source.stamp(names[3]) == source.fingerprints["s3://shards/eval-000001.tar"]
    # a glob lists the bucket, sorted
    assert expand("s3://shards/eval-*.tar", storage_options=options) == source.shards


def test_s3_missing_truncated_and_replaced_shards(s3, images):
    options, client = s3
    put_shards(client, images)
    with pytest.raises(BadInputError, match=r"s3://shards/eval-000004.tar: no such shard"):
        open_source("s3://shards/eval-{000000..000004}.tar", storage_options=options)
    before = fingerprint("s3://shards/eval-000001.tar", storage_options=options)
    good = client.get_object(Bucket="shards", Key="eval-000001.tar")["Body"].read()
    client.put_object(Bucket="shards", Key="eval-000001.tar", Body=good[:len(good) // 2 + 3])
    assert fingerprint("s3://shards/eval-000001.tar", storage_options=options) != before
    source = open_source("s3://shards/eval-{000000..000002}.tar", storage_options=options)
    with pytest.raises(BadInputError, match="s3://shards/eval-000001.tar"):
        pixels(source)


def test_s3_parquet_in_the_hugging_face_layout(s3, images):
    options, client = s3
    table = pa.table({"image": [{"bytes": png(im), "path": f"{i}.png"} for i, im in enumerate(images)]})
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink, row_group_size=2)
    client.put_object(Bucket="shards", Key="data/train-00000-of-00001.parquet", Body=sink.getvalue().to_pybytes())
    np.testing.assert_array_equal(pixels(open_source("s3://shards/data/*.parquet", storage_options=options)), images)


@pytest.mark.slow
def test_cli_reads_s3_shards_with_the_endpoint_from_the_environment(s3, images, tmp_path, random_weights):
    """The documented configuration: credentials and FSSPEC_S3_ENDPOINT_URL in the environment, nothing else;
    the statistics equal those of the same images in a folder."""
    options, client = s3
    put_shards(client, images)
    weights = random_weights("inception")
    env = {**os.environ, "FSSPEC_S3_ENDPOINT_URL": options["endpoint_url"],
           "PYTHONPATH": os.pathsep.join([os.path.dirname(os.path.dirname(fidkit.__file__)),
                                          os.environ.get("PYTHONPATH", "")])}
    out = tmp_path / "s3.npz"
    run = subprocess.run([sys.executable, "-m", "fidkit", "stats", "s3://shards/eval-{000000..000002}.tar",
                          "-o", str(out), "--weights", weights, "--device", "cpu", "--quiet"],
                         env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    from fidkit.stats.reference import Reference
    got = Reference.load(out).stats["inception/pool3"]
    want = fidkit.compute_stats(write_folder(tmp_path / "folder", images), weights=weights, device="cpu")
    np.testing.assert_allclose(got.mean, want.mean, atol=1e-6)
    np.testing.assert_allclose(got.cov, want.cov, atol=1e-6)


# --- https-style URLs ----------------------------------------------------------------------------------------

def test_http_shards_and_tables(images):
    with http_server() as (base, files):
        files.files["/ds/eval-0.tar"] = webdataset_tar([(f"k{i}", {"png": png(images[i])}) for i in range(4)])
        files.files["/ds/eval-1.tar"] = webdataset_tar([(f"k{i}", {"png": png(images[i])}) for i in range(4, 7)])
        source = open_source(f"{base}/ds/eval-{{0,1}}.tar")
        np.testing.assert_array_equal(pixels(source), images)
        assert source.fingerprints[f"{base}/ds/eval-0.tar"].startswith(f"{len(files.files['/ds/eval-0.tar'])}:etag=")
        # a Hugging Face style file URL with a query string (the '?' is no glob)
        sink = pa.BufferOutputStream()
        pq.write_table(pa.table({"image": [{"bytes": png(im), "path": None} for im in images]}), sink,
                       row_group_size=3)
        files.files["/datasets/x/resolve/main/train.parquet?download=true"] = sink.getvalue().to_pybytes()
        url = f"{base}/datasets/x/resolve/main/train.parquet?download=true"
        np.testing.assert_array_equal(pixels(open_source(url)), images)


def test_http_connection_dropped_mid_shard_is_named(images):
    with http_server() as (base, files):
        data = webdataset_tar([(f"k{i}", {"png": png(images[i])}) for i in range(7)])
        files.files["/a.tar"] = data
        files.drop_after["/a.tar"] = len(data) // 2
        source = open_source(f"{base}/a.tar")
        with pytest.raises(BadInputError, match=rf"{base}/a.tar: .*(truncated|connection)"):
            pixels(source)
        with pytest.raises(BadInputError, match=rf"{base}/missing.tar: no such shard"):
            open_source(f"{base}/missing.tar")


def test_http_without_etag_uses_last_modified_or_the_content(images):
    with http_server() as (base, files):
        files.etag = False
        files.files["/a.tar"] = webdataset_tar([("k", {"png": png(images[0])})])
        files.last_modified = True
        assert fingerprint(f"{base}/a.tar").endswith(":mtime=Tue, 01 Dec 2026 10:00:00 GMT")
        files.last_modified = False
        import hashlib
        first = fingerprint(f"{base}/a.tar")
        assert first == f"{len(files.files['/a.tar'])}:sha256={hashlib.sha256(files.files['/a.tar']).hexdigest()}"
        files.files["/a.tar"] = webdataset_tar([("k", {"png": png(images[1])})])
        assert fingerprint(f"{base}/a.tar") != first
