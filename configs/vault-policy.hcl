# Least privilege for rekey: every command (check, rotate, leak, resume,
# confirm, audit, status, scan) and `rekey serve`, and nothing else.
#
# Written for the configuration in configs/example.yaml: KV v2 mount
# "secret", state_path "rekey", and one key at vault_path
# "actionnetwork/main". Add the two key blocks once per keys[].vault_path;
# change "secret/" and "rekey/" if your mount or state_path differ.
#
#   vault policy write rekey configs/vault-policy.hcl
#   vault token create -policy=rekey -period=24h    # or an AppRole with token_policies=rekey
#
# rekey never deletes, destroys or undeletes anything, never changes how
# many versions Vault keeps, and reads no other path. An integration of
# type vault (another app's settings) is written with its own token_env; if
# it shares rekey's token, add read and update on that app's data path here.
# `rekey check` proves, from what Vault says this token may do, that every
# write of a rotation is allowed before anyone is told to click.

# The key: read every version, and write a new version (check-and-set on
# the version read). A key's first version is stored by creating the path:
# add "create" here only if `rekey rotate` is to store a brand-new key.
path "secret/data/actionnetwork/main" {
  capabilities = ["read", "update"]
}

# The key's metadata: which versions exist, and rekey's custom metadata
# (managed-by, rotated_at, reason, rotation_id, fingerprint, integrations).
# The patch may set custom_metadata and nothing else: not max_versions
# (max_versions=1 would erase every earlier version, a leaked one
# included), cas_required or delete_version_after.
path "secret/metadata/actionnetwork/main" {
  capabilities = ["read", "patch"]
  allowed_parameters = {
    "custom_metadata" = []
  }
}

# rekey's own records: rotations and their journal parts, each key's state
# (with its group's identity, hashed), version history (keyed hashes of
# every version, never a key) and rotation lock, hand-off codes' records
# (accessors and keyed hashes, never a code), the `rekey serve` lease and
# what it has said. They hold
# fingerprints and keyed hashes, never keys. Every write is check-and-set.
path "secret/data/rekey/*" {
  capabilities = ["create", "read", "update"]
}

# Listing a key's rotations (for `rekey serve`'s metrics).
path "secret/metadata/rekey/*" {
  capabilities = ["list"]
}

# `rekey check` and the rotation preflight read the mount's settings
# (cas_required, max_versions) and report them; they change nothing.
path "secret/config" {
  capabilities = ["read"]
}

# `rekey check` and the rotation preflight ask Vault what this token may do
# on every path a rotation writes. This is also in Vault's default policy;
# it grants nothing but the answer.
path "sys/capabilities-self" {
  capabilities = ["update"]
}

# Hand-off codes for manual integrations with `handoff`: Vault wraps the new
# key in a single-use token (response wrapping), which only its holder
# opens; rekey keeps the token's accessor, and looks it up by that accessor
# (which cannot open it) for `status` and `audit` to say whether it was
# opened. The opening itself needs no policy: the code is its own token.
path "sys/wrapping/wrap" {
  capabilities = ["update"]
}
path "auth/token/lookup-accessor" {
  capabilities = ["update"]
}

# `rekey serve` keeps its own token alive: it looks the token up and renews
# it as its lease runs down (also in Vault's default policy).
path "auth/token/lookup-self" {
  capabilities = ["read"]
}
path "auth/token/renew-self" {
  capabilities = ["update"]
}

# A token only for `rekey scan` (say, on a host that holds copies of the
# key) needs no read access to the key itself: scan then looks for every
# version by the keyed hash in rekey's history (in a build whose scan
# matches keyed hashes; see docs/RELIABILITY.md). Give it a policy of its
# own with just these two paths (per key id):
#
#   path "secret/data/rekey/keys/actionnetwork-main/history" { capabilities = ["read"] }
#   path "secret/data/rekey/keys/actionnetwork-main/state"   { capabilities = ["read"] }
