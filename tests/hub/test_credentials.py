"""The hub token goes to the OS keyring when a working backend exists, else to a 0600 file."""

from __future__ import annotations

import os
import stat

import pytest

keyring = pytest.importorskip("keyring")
from keyring.backend import KeyringBackend  # noqa: E402
from keyring.backends import fail  # noqa: E402
from keyring.errors import PasswordDeleteError  # noqa: E402

from desktop_app.hub import credentials  # noqa: E402


class MemoryKeyring(KeyringBackend):
    """A working keyring backend that keeps passwords in memory (stands in for the OS keyring)."""

    priority = 1

    def __init__(self) -> None:
        super().__init__()
        self.store: dict[tuple[str, str], str] = {}

    def get_password(self, service, username):
        return self.store.get((service, username))

    def set_password(self, service, username, password):
        self.store[(service, username)] = password

    def delete_password(self, service, username):
        try:
            del self.store[(service, username)]
        except KeyError:
            raise PasswordDeleteError("no such password") from None


@pytest.fixture
def no_env_token(monkeypatch):
    monkeypatch.delenv("HF_TOKEN", raising=False)


def test_token_goes_to_working_keyring_not_file(no_env_token):
    kr = MemoryKeyring()
    keyring.set_keyring(kr)  # the autouse isolated_keyring fixture restores the previous backend
    token_file = credentials._token_file()
    # a token stored in the file earlier (e.g. before a keyring was available) is moved out of it
    token_file.parent.mkdir(parents=True, exist_ok=True)
    token_file.write_text("hf_old_value")

    where = credentials.set_token("hf_keyring_secret_42")
    assert where == "keyring"
    assert kr.store == {(credentials.KEYRING_SERVICE, credentials.KEYRING_USER): "hf_keyring_secret_42"}
    assert not token_file.exists()
    assert credentials.get_token() == "hf_keyring_secret_42"
    desc = credentials.describe_token()
    assert desc == "system keyring" and "hf_keyring_secret_42" not in desc
    # nothing under the config folder holds the token
    for p in token_file.parent.rglob("*"):
        if p.is_file():
            assert b"hf_keyring_secret_42" not in p.read_bytes(), p
    credentials.clear_token()
    assert kr.store == {} and credentials.get_token() is None and credentials.describe_token() == "none"


def test_failing_keyring_falls_back_to_private_file(no_env_token):
    keyring.set_keyring(fail.Keyring())  # every call raises NoKeyringError
    with pytest.raises(keyring.errors.KeyringError):
        keyring.set_password("probe", "probe", "x")  # the backend really fails
    where = credentials.set_token("hf_file_secret_7")
    token_file = credentials._token_file()
    assert where == str(token_file)
    assert token_file.read_text("utf-8") == "hf_file_secret_7"
    assert stat.S_IMODE(os.stat(token_file).st_mode) == 0o600
    assert credentials.get_token() == "hf_file_secret_7"
    assert credentials.describe_token().startswith("file ") and "hf_file_secret_7" not in credentials.describe_token()
    credentials.clear_token()
    assert not token_file.exists() and credentials.get_token() is None


def test_env_token_wins_and_is_never_stored(monkeypatch):
    kr = MemoryKeyring()
    keyring.set_keyring(kr)
    kr.set_password(credentials.KEYRING_SERVICE, credentials.KEYRING_USER, "hf_from_keyring")
    monkeypatch.setenv("HF_TOKEN", "hf_from_env")
    assert credentials.get_token() == "hf_from_env"
    assert credentials.describe_token() == "HF_TOKEN environment variable"
    monkeypatch.delenv("HF_TOKEN")
    assert credentials.get_token() == "hf_from_keyring"
