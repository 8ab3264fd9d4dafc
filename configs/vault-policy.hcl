# Least privilege for rekey: every command (check, rotate, leak, resume,
# confirm, audit, status, scan) and `rekey serve`.
#
# Written for the configuration in configs/example.yaml: KV v2 mount
# "secret", state_path "rekey", and one key at vault_path
# "actionnetwork/main". Add the two key blocks once per keys[].vault_path;
# change "secret/" and "rekey/" if your mount or state_path differ.
#
#   vault policy write rekey configs/vault-policy.hcl
#   vault token create -policy=rekey -period=24h    # or an AppRole with token_policies=rekey
#
# rekey never deletes, destroys or undeletes anything, and reads no other
# path. An integration of type vault (another app's settings) is written
# with its own token_env; if it shares rekey's token, add read and update
# on that app's data path here.

# The key: read every version, and write a new version (check-and-set on
# the version read). A key's first version is stored by creating the path:
# add "create" here only if `rekey rotate` is to store a brand-new key.
path "secret/data/actionnetwork/main" {
  capabilities = ["read", "update"]
}

# The key's metadata: which versions exist, and rekey's custom metadata
# (managed-by, rotated_at, reason, rotation_id, fingerprint, integrations).
path "secret/metadata/actionnetwork/main" {
  capabilities = ["read", "patch"]
}

# rekey's own records: rotations and their journals, each key's state and
# rotation lock, compromised versions, audits, the `rekey serve` lease and
# what it has said. They hold fingerprints, never keys.
path "secret/data/rekey/*" {
  capabilities = ["create", "read", "update", "list"]
}

# Listing rekey's records (rotations, for `rekey serve`'s metrics).
path "secret/metadata/rekey/*" {
  capabilities = ["read", "list"]
}

# `rekey check` asks Vault what this token may do on the paths above. This
# is also in Vault's default policy; it grants nothing but the answer.
path "sys/capabilities-self" {
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
