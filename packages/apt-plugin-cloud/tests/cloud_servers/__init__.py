"""Servers the cloud tests run against, all bound to 127.0.0.1 on free ports.

* :mod:`.seaweed` — a real SeaweedFS (``weed mini``) with S3 signature verification.
* :mod:`.fault_proxy` — an HTTP proxy that injects 503 SlowDown, 429 + Retry-After, cut connections
  and corrupted bytes in front of any of them.
* :mod:`.oss_server`, :mod:`.hub_server`, :mod:`.modelscope_server` — protocol-level servers for
  Aliyun OSS, the Hugging Face Hub and ModelScope (none of them can be installed locally), driven
  by the real SDKs in the tests.
"""
