from __future__ import annotations

import meisa_sync


def test_all_is_sorted_and_unique() -> None:
    assert meisa_sync.__all__ == sorted(set(meisa_sync.__all__))


def test_all_names_exist() -> None:
    missing = [name for name in meisa_sync.__all__ if not hasattr(meisa_sync, name)]
    assert missing == []


def test_core_never_imports_the_plugins() -> None:
    import subprocess
    import sys

    code = (
        "import sys, meisa_sync, meisa_sync.worker, meisa_sync.cli;"
        "bad = [m for m in sys.modules if m.startswith(('meisa_sync_', 'django', 'sqlalchemy'))];"
        "print(bad); sys.exit(1 if bad else 0)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
