"""The live web dashboard of the fleet (``toolfleet web``): one page over Tornado."""

from toolfleet.web.access import Access, Scrubber, access_for, is_loopback

__all__ = ["Access", "Scrubber", "access_for", "is_loopback"]
