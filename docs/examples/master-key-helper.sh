#!/bin/sh
# An example master key helper for `workbooks --master-key-command`
# (docs/keys.md). Work-books runs it as `PROGRAM get KEY_ID`, without a
# shell, and reads the key, 64 hex characters, from its standard output.
# Exit non-zero when the key cannot be given; anything written to standard
# error is discarded by Work-books (run the helper by hand to see it).
#
# This one asks HashiCorp Vault's KV store; replace the body with your KMS
# or HSM tool (aws kms decrypt, gcloud kms decrypt, pkcs11-tool, ...).
set -eu
[ "${1:-}" = get ] || { echo "usage: $0 get KEY_ID" >&2; exit 2; }
key_id="${2:?key id}"
case "$key_id" in
  *[!a-z0-9-]*) echo "bad key id" >&2; exit 2 ;;
esac
exec vault kv get -field=hex "secret/workbooks/$key_id"
