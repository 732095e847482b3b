// Node roles: what `--roles` accepts, and which layouts a local cluster refuses.
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { hasRole, layoutProblem, parseRoles, parseRolesList, rolesOf } from "../../src/core/roles.js";

describe("node roles", () => {
  test("parses roles joined with '+', in a fixed order, and a comma-separated list per node", () => {
    assert.deepEqual(parseRoles("monitor+storage"), ["storage", "monitor"]);
    assert.deepEqual(parseRoles(" compute "), ["compute"]);
    assert.deepEqual(parseRolesList("storage+monitor,storage+monitor,compute+monitor,compute"), [
      ["storage", "monitor"],
      ["storage", "monitor"],
      ["compute", "monitor"],
      ["compute"],
    ]);
  });

  test("refuses unknown, empty and repeated roles, naming the entry", () => {
    assert.throws(
      () => parseRoles("compute+osd"),
      /roles "compute\+osd": unknown role "osd" \(roles are compute, storage, monitor\)/,
    );
    assert.throws(() => parseRolesList("compute,,storage"), /roles "": an empty role/);
    assert.throws(() => parseRoles("storage+"), /an empty role/);
    assert.throws(() => parseRoles("compute+compute"), /a role is named twice/);
  });

  test("a node recorded without roles has them all", () => {
    assert.deepEqual(rolesOf({}), ["compute", "storage", "monitor"]);
    assert.equal(hasRole({ roles: ["storage"] }, "compute"), false);
  });

  test("a layout needs a compute node, a monitor and a storage node for Ceph, monitors for etcd voters", () => {
    const guide = parseRolesList("storage+monitor,storage+monitor,compute+monitor,compute");
    assert.equal(layoutProblem(guide, { ceph: true, etcdVoters: 3 }), undefined);
    assert.match(
      layoutProblem(parseRolesList("storage+monitor"), { ceph: true, etcdVoters: 0 })!,
      /no node has the compute role/,
    );
    assert.match(
      layoutProblem(parseRolesList("compute+storage"), { ceph: true, etcdVoters: 0 })!,
      /monitor role/,
    );
    assert.match(
      layoutProblem(parseRolesList("compute+monitor"), { ceph: true, etcdVoters: 0 })!,
      /storage role/,
    );
    assert.equal(layoutProblem(parseRolesList("compute"), { ceph: false, etcdVoters: 0 }), undefined);
    assert.match(
      layoutProblem(parseRolesList("compute+monitor,storage+monitor,compute"), {
        ceph: true,
        etcdVoters: 3,
      })!,
      /3 etcd members need 3 nodes with the monitor role; 2 have it/,
    );
  });
});
