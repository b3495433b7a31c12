"""Downloads (util/downloads.py) against a server on 127.0.0.1 started here: a good file, a truncated
one, an interrupted transfer, a wrong hash, a file changed upstream, a 404, a slow one (progress
shown), a killed download, offline mode, the Hugging Face Hub's path and cache, a Google Drive
folder. Each ends in the expected one line, and a file that failed is never left to be used."""
from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from helpers import REPO, FileServer


def pth_bytes(n: int = 1000, seed: int = 0) -> bytes:
    """A small checkpoint as torch.save writes it (zip format)."""
    buf = io.BytesIO()
    torch.save({"model": {"w": torch.randn(n, generator=torch.Generator().manual_seed(seed))}}, buf)
    return buf.getvalue()


@pytest.fixture
def caches(tmp_path, monkeypatch):
    """Private torch.hub and Hugging Face caches, online, no weights folder."""
    for key in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_ENDPOINT", "HF_HUB_CACHE", "DINO_WEIGHTS_DIR",
                "DINO_MODEL_ZOO"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf_home"))
    return tmp_path


def files_in(folder: Path) -> list:
    """Every file under `folder`, except locks and the sha256 records."""
    if not folder.exists():
        return []
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*")
                  if p.is_file() and p.name != ".lock" and "sha256-seen" not in p.parts)


def one_line(message: str) -> str:
    assert "\n" not in message.strip(), message
    return message


def test_good_file_is_downloaded_once_checked_recorded_and_reused(caches, capfd):
    from util.downloads import fetch, seen_sha256, sha256_of, url_cache_path
    data = pth_bytes()
    with FileServer({"/v1/model.pth": data}) as server:
        url = server.url + "/v1/model.pth"
        path = fetch(url)
        assert Path(path).read_bytes() == data and path == url_cache_path(url)
        assert os.path.basename(path) == "model.pth"  # the file keeps its name, in a folder per URL
        assert seen_sha256(url) == sha256_of(path)  # recorded on first download
        assert fetch(url) == path and server.gets("/v1/model.pth") == 1  # the cache, no second request
    assert "100%" in capfd.readouterr().err  # torch.hub's progress bar


def test_truncated_file_is_refused_and_nothing_is_kept(caches):
    """The server's file itself is cut (its length announced as it is): not a whole zip archive."""
    from util.downloads import DownloadError, fetch
    data = pth_bytes()
    with FileServer({"/model.pth": data[: len(data) * 2 // 3]}) as server:
        with pytest.raises(DownloadError) as info:
            fetch(server.url + "/model.pth")
    message = one_line(str(info.value))
    assert server.url + "/model.pth" in message and "incomplete" in message and "nothing was kept" in message
    assert files_in(caches / "torch_home") == []


def test_interrupted_transfer_is_refused_and_the_next_try_starts_clean(caches):
    """The connection drops after half the announced bytes (torch.hub's downloader does not notice):
    refused; the next run downloads the whole file."""
    from util.downloads import DownloadError, fetch
    data = pth_bytes(5000)
    with FileServer({"/model.pth": data}, faults={"/model.pth": "cut"}) as server:
        with pytest.raises(DownloadError, match="incomplete"):
            fetch(server.url + "/model.pth")
        assert files_in(caches / "torch_home") == []
        del server.faults["/model.pth"]
        assert Path(fetch(server.url + "/model.pth")).read_bytes() == data


def test_wrong_sha256_is_refused(caches):
    from util.downloads import DownloadError, fetch
    with FileServer({"/model.pth": pth_bytes()}) as server:
        with pytest.raises(DownloadError) as info:
            fetch(server.url + "/model.pth", sha256="0" * 64)
    message = one_line(str(info.value))
    assert "wrong sha256" in message and "0" * 64 in message and "nothing was kept" in message
    assert files_in(caches / "torch_home") == []


def test_a_file_changed_upstream_since_its_first_download_is_refused(caches):
    """No sha256 known: the one seen at the first download is the reference for later downloads."""
    from util.downloads import DownloadError, fetch, seen_record_path
    with FileServer({"/model.pth": pth_bytes(seed=0)}) as server:
        url = server.url + "/model.pth"
        os.remove(fetch(url))  # e.g. a cleaned cache
        server.files["/model.pth"] = pth_bytes(seed=1)
        with pytest.raises(DownloadError) as info:
            fetch(url)
    message = one_line(str(info.value))
    assert "differs from" in message and seen_record_path(url) in message
    assert files_in(caches / "torch_home") == []


def test_404_names_the_url_and_what_to_do(caches):
    from util.downloads import DownloadError, fetch
    with FileServer({}) as server:
        with pytest.raises(DownloadError) as info:
            fetch(server.url + "/gone.pth", manual="get gone.pth from its authors and put it in /w")
    message = one_line(str(info.value))
    assert f"{server.url}/gone.pth: download failed (HTTP Error 404" in message
    assert "put it in /w" in message
    assert files_in(caches / "torch_home") == []


def test_slow_download_shows_progress_as_it_goes(caches, capfd):
    from util.downloads import fetch
    data = pth_bytes(500_000)  # 2 MB in 16 pieces
    with FileServer({"/big.pth": data}, faults={"/big.pth": "slow"}) as server:
        assert Path(fetch(server.url + "/big.pth")).read_bytes() == data
    err = capfd.readouterr().err
    shown = {int(p) for p in __import__("re").findall(r"(\d+)%\|", err)}
    assert {p for p in shown if 0 < p < 100}, err  # intermediate states, not only the end
    assert 100 in shown


def test_killed_download_is_never_used_and_the_next_run_cleans_up(caches):
    from util.downloads import fetch, url_cache_path
    data = pth_bytes(300_000)  # half of it is more than torch.hub reads at once
    with FileServer({"/model.pth": data}, faults={"/model.pth": "hang"}) as server:
        url = server.url + "/model.pth"
        final = Path(url_cache_path(url))
        script = f"import sys; sys.path.insert(0, {REPO!r}); from util.downloads import fetch; fetch({url!r})"
        proc = subprocess.Popen([sys.executable, "-c", script], env=dict(os.environ), stderr=subprocess.DEVNULL)
        try:
            for _ in range(600):  # until the download is under way (half the bytes arrived)
                partial = [p for p in final.parent.glob("*.partial")] if final.parent.exists() else []
                if partial and partial[0].stat().st_size > 0:
                    break
                time.sleep(0.1)
            else:
                pytest.fail("the download never started")
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
        assert not final.exists() and files_in(final.parent)  # a leftover, never the final name
        del server.faults["/model.pth"]
        assert Path(fetch(url)).read_bytes() == data
    assert files_in(final.parent) == [final.name]  # the leftover was removed


def test_offline_mode_names_the_file_and_where_to_put_it_and_uses_the_cache(caches, monkeypatch):
    from util.downloads import DownloadError, fetch
    with FileServer({"/a.pth": pth_bytes(), "/b.pth": pth_bytes(seed=2)}) as server:
        cached = fetch(server.url + "/a.pth")
        monkeypatch.setenv("HF_HUB_OFFLINE", "1")
        assert fetch(server.url + "/a.pth") == cached
        with pytest.raises(DownloadError) as info:
            fetch(server.url + "/b.pth", manual="get b.pth from the authors and put it in /weights")
        assert server.gets("/b.pth") == 0
    message = one_line(str(info.value))
    assert f"{server.url}/b.pth: not downloaded: offline (HF_HUB_OFFLINE=1)" in message
    assert "b.pth" in message and "/weights" in message


HUB_URL = "https://huggingface.co/org/dino-test/resolve/main/model.pth"


def test_hub_files_come_through_huggingface_hub_its_endpoint_cache_and_offline_mode(caches, monkeypatch):
    from util.downloads import DownloadError, fetch
    data = pth_bytes()
    with FileServer({"/org/dino-test/resolve/main/model.pth": data}) as server:
        monkeypatch.setenv("HF_ENDPOINT", server.url)  # a mirror, as people behind firewalls set it
        path = fetch(HUB_URL)
        assert Path(path).read_bytes() == data
        assert str(caches / "hf_home" / "hub" / "models--org--dino-test") in path  # the Hub's own cache
        assert fetch(HUB_URL) == path and server.gets("/org/dino-test/resolve/main/model.pth") == 1
        with pytest.raises(DownloadError) as info:
            fetch("https://huggingface.co/org/dino-test/resolve/main/other.pth")
        assert f"{server.url}/org/dino-test/resolve/main/other.pth: download failed (404" in one_line(str(info.value))
        monkeypatch.setenv("HF_HUB_OFFLINE", "1")
        assert fetch(HUB_URL) == path
        with pytest.raises(DownloadError, match="offline"):
            fetch("https://huggingface.co/org/dino-test/resolve/main/third.pth")


def test_hub_file_with_a_wrong_sha256_is_taken_out_of_the_cache(caches, monkeypatch):
    from util.downloads import DownloadError, fetch, hub_cached
    with FileServer({"/org/dino-test/resolve/main/model.pth": pth_bytes()}) as server:
        monkeypatch.setenv("HF_ENDPOINT", server.url)
        with pytest.raises(DownloadError, match="wrong sha256"):
            fetch(HUB_URL, sha256="f" * 64)
    assert hub_cached(HUB_URL) is None


def test_drive_folder_file_comes_through_gdown(caches, monkeypatch):
    """gdown lists the folder and downloads the file of the asked name (Google Drive itself cannot be
    reached here: the listing is given, the download goes through gdown to the local server)."""
    gdown = pytest.importorskip("gdown")
    from gdown.download import GoogleDriveFileToDownload

    from util.downloads import DownloadError, fetch
    data = pth_bytes()
    folder = "https://drive.google.com/drive/folders/FOLDER_ID"
    with FileServer({"/ID_B": data}) as server:
        listing = [GoogleDriveFileToDownload(id="ID_A", path="checkpoint0011_4scale.pth", local_path="a"),
                   GoogleDriveFileToDownload(id="ID_B", path="checkpoint0011_5scale.pth", local_path="b")]
        monkeypatch.setattr(gdown, "download_folder", lambda **kw: listing)
        real = gdown.download
        monkeypatch.setattr(gdown, "download", lambda id, output, quiet: real(url=f"{server.url}/{id}",
                                                                              output=output, quiet=quiet))
        path = fetch(folder, file_name="checkpoint0011_5scale.pth")
        assert Path(path).read_bytes() == data and path.endswith("checkpoint0011_5scale.pth")
        assert fetch(folder, file_name="checkpoint0011_5scale.pth") == path and server.gets("/ID_B") == 1
        with pytest.raises(DownloadError) as info:
            fetch(folder, file_name="checkpoint0033_5scale.pth")
    message = one_line(str(info.value))
    assert "has no checkpoint0033_5scale.pth" in message and "checkpoint0011_4scale.pth" in message
