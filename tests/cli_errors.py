"""The CLI's failure contract, as tests assert it: exit 2 and exactly one ``error:`` line."""

from shiftflow.cli import main


def one_line_exit_2(argv, capsys, *phrases) -> str:
    """Run ``shiftflow argv``; assert exit status 2 and one stderr line starting ``error: ``
    that contains every phrase; return the line."""
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("error: "), err
    for p in phrases:
        assert p in err, err
    return err
