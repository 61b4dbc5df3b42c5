"""The open-file limit: every held poll is one socket."""

from __future__ import annotations

import logging
import resource

logger = logging.getLogger("camrelay")


def raise_open_file_limit() -> int:
    """Lift the soft limit to the hard one and return the limit now in force.

    Many systems start processes at 1024, which would cap a server near 1,000
    cameras: past it every accept() fails.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY:
        hard = max(soft, 1 << 20)
    if soft != resource.RLIM_INFINITY and soft < hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        except (ValueError, OSError) as error:
            logger.warning("could not raise the open-file limit from %d: %s", soft, error)
            return soft
        logger.info("raised the open-file limit from %d to %d", soft, hard)
        return hard
    logger.info("open-file limit %d: about that many cameras can hold a poll at once", soft)
    return soft
