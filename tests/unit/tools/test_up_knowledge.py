"""What ``falcon up`` says about the offline knowledge once the stack is up."""

from tools.cli.stack_cmds import knowledge_line, shipped_spaces


def test_ready_is_said_only_when_every_shipped_space_s_knowledge_is_built():
    assert knowledge_line({"the paper's space": "ready", "the live CPU space": "ready"}) == \
        "ready: offline knowledge built for the paper's space and the live CPU space"
    still = knowledge_line({"the paper's space": "building", "the live CPU space": "ready"})
    assert still.startswith("ready, but the offline knowledge for the paper's space is still building")
    assert "says so in its notices" in still
    assert "no offline dataset" in knowledge_line({"the paper's space": "no dataset"})


def test_the_shipped_spaces_are_the_paper_s_and_both_live_spaces():
    spaces = shipped_spaces()
    assert spaces["the paper's space"].size == 1440
    assert set(spaces["the live CPU space"].names) == {"cpus", "batchsize", "graph_opt"}
    assert "queue_delay_us" in spaces["the served live space"].names
    assert knowledge_line(dict.fromkeys(spaces, "ready")) == \
        "ready: offline knowledge built for the paper's space, the live CPU space and the served live space"
