"""When an interrupt is sent again: pure timing policy, no kernel."""

from gateway.execution.kernel import INTERRUPT_RESEND_AFTER, _resend_time, interrupt_target


def test_resent_a_while_after_the_kernel_answered():
    assert _resend_time(first=10.0, answered=10.2, grace=3.0) == 10.2 + INTERRUPT_RESEND_AFTER


def test_a_slow_answer_still_leaves_the_resend_time_to_act_before_the_grace_ends():
    assert _resend_time(first=10.0, answered=None, grace=3.0) == 12.0
    assert _resend_time(first=10.0, answered=11.8, grace=3.0) == 12.0
    # A short grace still waits the minimum before sending again.
    assert _resend_time(first=10.0, answered=None, grace=1.0) == 10.0 + INTERRUPT_RESEND_AFTER


def test_no_interrupt_no_resend():
    assert _resend_time(first=float("inf"), answered=None, grace=3.0) == float("inf")


def test_the_signal_goes_to_the_top_most_process_of_the_kernels_program():
    processes = {
        10: (1, "/usr/bin/bwrap"),
        11: (10, "/usr/lib/R/bin/exec/R"),  # the kernel
        12: (11, "/usr/bin/sh"),  # system() from a cell
        13: (12, "/usr/lib/R/bin/exec/R"),  # an R the cell started
        14: None,  # exited meanwhile
    }
    assert interrupt_target(processes, "R") == 11
    assert interrupt_target({10: (1, "/usr/bin/bwrap")}, "R") is None
