"""Every signer-node operation of the protocol, bound to the function that runs it on the node."""

from __future__ import annotations

from typing import Any

from duo_ods.config.resolve import Node
from duo_ods.node import keyops as K
from duo_ods.node import ops as O
from duo_ods.node import supervise as S
from duo_ods.protocol import ops as P
from duo_ods.protocol.serve import Bound, bind, handlers

NODE_HANDLERS: dict[str, Bound[Any, Any, Node]] = handlers(
    bind(P.INIT, O.op_init),
    bind(P.START, O.op_start),
    bind(P.STOP, O.op_stop),
    bind(P.STATUS, O.op_status),
    bind(P.SUPERVISE, S.op_supervise),
    bind(P.POLICY_IMPORT, O.op_policy_import),
    bind(P.ZONE_LIST, O.op_zone_list),
    bind(P.ZONE_ADD, O.op_zone_add),
    bind(P.ZONE_ADD_BATCH, O.op_zone_add_batch),
    bind(P.ZONE_UPDATE, O.op_zone_update),
    bind(P.ZONE_RESIGN, O.op_zone_resign),
    bind(P.ZONE_REMOVE, O.op_zone_remove),
    bind(P.STATE_EXPORT, O.op_state_export),
    bind(P.INPUT_STATE, O.op_input_state),
    bind(P.ZONE_LEVELLED, O.op_zone_levelled),
    bind(P.RELAY_SYNC, O.op_relay_sync),
    *K.kek_handlers(K.node_token, backup=False),
    bind(P.KEY_GENERATE, K.op_key_generate),
    bind(P.KEY_WRAP, K.op_key_wrap),
    bind(P.KEY_UNWRAP, K.op_key_unwrap),
    bind(P.KEY_SEAL, K.op_key_seal),
    bind(P.KEY_PUBLIC, K.op_key_public),
    bind(P.KEY_DELETE, K.op_key_delete),
    bind(P.HSM_LIST, K.op_hsm_list),
    bind(P.KEY_IMPORT, K.op_key_import),
    bind(P.ENFORCE, K.op_enforce),
    bind(P.KEY_LIST, K.op_key_list),
    bind(P.DB_SCHEMA, K.op_db_schema),
    bind(P.KEY_POOL_ADD, K.op_key_pool_add),
    bind(P.KEY_POOL_REMOVE, K.op_key_pool_remove),
    bind(P.KEY_STATES, K.op_key_states),
    bind(P.KEY_STATES_WRITE, K.op_key_states_write),
    bind(P.KEY_STATES_ADOPT, K.op_key_states_adopt),
    bind(P.KEY_ROLLOVER, K.op_key_rollover),
    bind(P.KEY_DS, K.op_key_ds),
    bind(P.KEY_GENERATE_BATCH, K.op_key_generate_batch),
    bind(P.KEY_WRAP_BATCH, K.op_key_wrap_batch),
    bind(P.KEY_UNWRAP_BATCH, K.op_key_unwrap_batch),
    bind(P.KEY_SEAL_BATCH, K.op_key_seal_batch),
    bind(P.KEY_IMPORT_BATCH, K.op_key_import_batch),
)
