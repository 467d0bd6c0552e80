// Golden coro_rpc traffic between Mooncake v0.3.12 clients and mooncake_master, copied from
// ../shared/spec/coro-rpc-golden.md §6 (headers and bodies in wire order, hex). Test vectors only.
// The two frames with 2-byte length prefixes (§6.5) are printed truncated there; tests rebuild them.

export interface GoldenFrame {
  header: string;
  body?: string;
  truncated?: boolean;
}

export interface GoldenExchange {
  title: string;
  request?: GoldenFrame;
  response?: GoldenFrame;
  /** A second response shown in the same section (Ping's steady-state answer). */
  laterResponse?: GoldenFrame;
}

export const GOLDEN_EXCHANGES: GoldenExchange[] = [
  {
    "title": "ServiceReady (version handshake; the first call on every new MasterClient)",
    "request": {
      "header": "150000000000000056bb817b0000000000000000",
      "body": ""
    },
    "response": {
      "header": "15000000000000001100000000000000",
      "body": "35ccb31c0487800c01000105322e302e30"
    }
  },
  {
    "title": "GetStorageConfig (store node and store client, right after ServiceReady)",
    "request": {
      "header": "1500000001000000a6b0a98d0000000000000000",
      "body": ""
    },
    "response": {
      "header": "15000000010000001900000000000000",
      "body": "eb68b59c0487fd800c0b04ff01000100010000000000000000"
    }
  },
  {
    "title": "MountSegment (store node, 256 MiB segment)",
    "request": {
      "header": "1500000002000000bbc47e3e7500000000000000",
      "body": "af0df79e04fdfdfd04048989ff800c0404800c800c800cfffd04048989ffff003d1fa611f07d414ebb3e76357843ba970f3132372e302e302e313a313235383600000098a37f000000000010000000000f3132372e302e302e313a31323538360374637000fd5af2822f5340149fc5a6efe49a47bd"
    },
    "response": {
      "header": "15000000020000000a00000000000000",
      "body": "cd6828af0487fa010001"
    }
  },
  {
    "title": "Ping (store node, first ping after mount \u2192 NEED_REMOUNT)",
    "request": {
      "header": "1500000003000000e5dac2d61c00000000000000",
      "body": "e1836d3c04fd04048989ff00fd5af2822f5340149fc5a6efe49a47bd"
    },
    "response": {
      "header": "15000000030000001900000000000000",
      "body": "538f2a740487fd0301ff010001000000000000000002000000"
    },
    "laterResponse": {
      "header": "15000000030000001900000000000000",
      "body": "538f2a740487fd0301ff010001000000000000000001000000"
    }
  },
  {
    "title": "ReMountSegment (store node, reply to NEED_REMOUNT)",
    "request": {
      "header": "1500000004000000723b050b7700000000000000",
      "body": "896bc6c604fd84fdfd04048989ff800c0404800c800c800cfffd04048989ffff00013d1fa611f07d414ebb3e76357843ba970f3132372e302e302e313a313235383600000098a37f000000000010000000000f3132372e302e302e313a31323538360374637000fd5af2822f5340149fc5a6efe49a47bd"
    },
    "response": {
      "header": "15000000040000000a00000000000000",
      "body": "cd6828af0487fa010001"
    }
  },
  {
    "title": "FetchTasks (store node, about once per second next to Ping)",
    "request": {
      "header": "1500000005000000441814df2700000000000000",
      "body": "859b9a7504fdfd04048989ff04ff00fd5af2822f5340149fc5a6efe49a47bd1000000000000000"
    },
    "response": {
      "header": "15000000050000001800000000000000",
      "body": "2745e159048784fdfd04048989ff01800c0302ff01000100"
    }
  },
  {
    "title": "UnmountSegment (store node on SIGINT shutdown)",
    "request": {
      "header": "150000007401000065b4106f3400000000000000",
      "body": "e112c5d404fdfd04048989fffd04048989ffff003d1fa611f07d414ebb3e76357843ba97fd5af2822f5340149fc5a6efe49a47bd"
    },
    "response": {
      "header": "15000000740100000a00000000000000",
      "body": "cd6828af0487fa010001"
    }
  },
  {
    "title": "QuerySegmentStatusById",
    "request": {
      "header": "150000001d00000053d43f571c00000000000000",
      "body": "e1836d3c04fd04048989ff00aaaaaaaaaaaaaaaabbbbbbbbbbbbbbbb"
    },
    "response": {
      "header": "150000001d0000000e00000000000000",
      "body": "a9e9519804870101000101000000"
    }
  },
  {
    "title": "GetFsdir",
    "request": {
      "header": "150000001b0000002351583e0000000000000000",
      "body": ""
    },
    "response": {
      "header": "150000001b0000000c00000000000000",
      "body": "35ccb31c0487800c01000100"
    }
  },
  {
    "title": "PutStart (4 KiB value, replica_num 1)",
    "request": {
      "header": "1500000002000000c19aea657700000000000000",
      "body": "0fbd85e304fdfd04048989ff800c04fd0404040685040b84800c800c84800c0b06800c8584800cff800cff00dfd5bb9c93a74f968fe631e151d0006508676f6c645f305f300010000000000000010000000000000000000000000000000000000000000000000000000000000000000764656661756c74"
    },
    "response": {
      "header": "15000000020000006e00000000000000",
      "body": "a72739c4048784fd0486fdfd0404800c800cfffffdfd0404800c800cfffffd800c04fffdfd04048989ff04800cfffd800c04040401ffff01ff01000101010000000000000000001000000000000000000098a37f0000037463700f3132372e302e302e313a313235383602000000"
    }
  },
  {
    "title": "PutStart error: key already exists",
    "response": {
      "header": "15000000060000004000000000000000",
      "body": "a72739c4048784fd0486fdfd0404800c800cfffffdfd0404800c800cfffffd800c04fffdfd04048989ff04800cfffd800c04040401ffff01ff0100003ffdffff"
    }
  },
  {
    "title": "PutEnd",
    "request": {
      "header": "150000000300000099208b8e3d00000000000000",
      "body": "239281d104fdfd04048989fffd800c8504ff01800cff00dfd5bb9c93a74f968fe631e151d0006508676f6c645f305f3000040000000764656661756c74"
    },
    "response": {
      "header": "15000000030000000a00000000000000",
      "body": "cd6828af0487fa010001"
    }
  },
  {
    "title": "PutRevoke",
    "request": {
      "header": "1500000008000000447c76a03200000000000000",
      "body": "8b227a1b04fdfd04048989ff800c01800cff0011111111111111112222222222222222026b32040000000764656661756c74"
    },
    "response": {
      "header": "15000000080000000a00000000000000",
      "body": "cd6828af0487fa010001"
    }
  },
  {
    "title": "BatchPutStart (2 keys)",
    "request": {
      "header": "15000000100000002218be568000000000000000",
      "body": "a5c0705804fdfd04048989ff84800c8404fd0404040685040b84800c800c84800c0b06800c8584800cff800cff0011111111111111112222222222222222020262330262340200100000000000000020000000000000010000000000000000000000000000000000000000000000000000000000000000000764656661756c74"
    },
    "response": {
      "header": "1500000010000000a300000000000000",
      "body": "036d00ad04848784fd0486fdfd0404800c800cfffffdfd0404800c800cfffffd800c04fffdfd04048989ff04800cfffd800c04040401ffff01ff0100020101b11e0000000000000000100000000000000000000001000000037463700f3132372e302e302e313a3139393939020000000101b21e00000000000000002000000000000000a0fa98a37f0000037463700f3132372e302e302e313a313235383602000000"
    }
  },
  {
    "title": "BatchPutEnd (2 keys)",
    "request": {
      "header": "1500000011000000ab20e0803d00000000000000",
      "body": "c9a77ef504fdfd04048989ff84fd800c8504ff01800cff0011111111111111112222222222222222020262330002623400040000000764656661756c74"
    },
    "response": {
      "header": "15000000110000000d00000000000000",
      "body": "cf52fc39048487fa0100020101"
    }
  },
  {
    "title": "BatchPutRevoke (2 keys)",
    "request": {
      "header": "150000000f000000aa6725b83700000000000000",
      "body": "455dee9404fdfd04048989ff84800c01800cff001111111111111111222222222222222202026231026232040000000764656661756c74"
    },
    "response": {
      "header": "150000000f0000000d00000000000000",
      "body": "cf52fc39048487fa0100020101"
    }
  },
  {
    "title": "GetReplicaList (store client GET)",
    "request": {
      "header": "150000000800000074f17e1f1d00000000000000",
      "body": "d91ef97c04fd800c800cff0008676f6c645f305f300764656661756c74"
    },
    "response": {
      "header": "15000000080000007c00000000000000",
      "body": "6d27c6880487fd84fd0486fdfd0404800c800cfffffdfd0404800c800cfffffd800c04fffdfd04048989ff04800cfffd800c04040401ffff01ff048504ff01000101010000000000000000001000000000000000000098a37f0000037463700f3132372e302e302e313a313235383603000000102700000000000000"
    }
  },
  {
    "title": "GetReplicaList error: missing key",
    "response": {
      "header": "150000000d0000004500000000000000",
      "body": "6d27c6880487fd84fd0486fdfd0404800c800cfffffdfd0404800c800cfffffd800c04fffdfd04048989ff04800cfffd800c04040401ffff01ff048504ff01000040fdffff"
    }
  },
  {
    "title": "BatchGetReplicaList (one hit, one miss)",
    "request": {
      "header": "1500000012000000ff200d1b1f00000000000000",
      "body": "638df70004fd84800c800cff0002026233056e6f6b65790764656661756c74"
    },
    "response": {
      "header": "15000000120000008300000000000000",
      "body": "3b45c520048487fd84fd0486fdfd0404800c800cfffffdfd0404800c800cfffffd800c04fffdfd04048989ff04800cfffd800c04040401ffff01ff048504ff0100020101b11e0000000000000000100000000000000000000001000000037463700f3132372e302e302e313a3139393939030000001027000000000000000040fdffff"
    }
  },
  {
    "title": "ExistKey",
    "request": {
      "header": "1500000009000000095f38891700000000000000",
      "body": "d91ef97c04fd800c800cff00026b310764656661756c74"
    },
    "response": {
      "header": "15000000090000000b00000000000000",
      "body": "d300e89004870b01000101"
    }
  },
  {
    "title": "BatchExistKey",
    "request": {
      "header": "150000000b000000b0a69fb81f00000000000000",
      "body": "638df70004fd84800c800cff0002026b31056e6f6b65790764656661756c74"
    },
    "response": {
      "header": "150000000b0000000f00000000000000",
      "body": "5d8c5f2a0484870b01000201010100"
    }
  },
  {
    "title": "GetReplicaListByRegex",
    "request": {
      "header": "15000000130000003cf96afe1700000000000000",
      "body": "d91ef97c04fd800c800cff00025e620764656661756c74"
    },
    "response": {
      "header": "1500000013000000aa00000000000000",
      "body": "41c04373048782800c84fd0486fdfd0404800c800cfffffdfd0404800c800cfffffd800c04fffdfd04048989ff04800cfffd800c04040401ffff01ff0100010202623301b11e0000000000000000100000000000000000000001000000037463700f3132372e302e302e313a31393939390300000002623401b21e00000000000000002000000000000000a0fa98a37f0000037463700f3132372e302e302e313a313235383603000000"
    }
  },
  {
    "title": "Remove \u2192 OBJECT_HAS_LEASE (key was read less than 10 s earlier, force=false)",
    "request": {
      "header": "15000000140000007497b0f11900000000000000",
      "body": "ef9fe81804fd800c0b800cff00026b31000764656661756c74"
    },
    "response": {
      "header": "15000000140000000e00000000000000",
      "body": "cd6828af0487fa0100003efdffff"
    }
  },
  {
    "title": "Remove with force=true \u2192 ok",
    "response": {
      "header": "15000000150000000a00000000000000",
      "body": "cd6828af0487fa010001"
    }
  },
  {
    "title": "BatchRemove (force=true; one hit, one miss)",
    "request": {
      "header": "15000000160000007d4002592100000000000000",
      "body": "a19c7a1904fd84800c0b800cff0002026233056e6f6b6579010764656661756c74"
    },
    "response": {
      "header": "15000000160000001100000000000000",
      "body": "cf52fc39048487fa010002010040fdffff"
    }
  },
  {
    "title": "RemoveByRegex",
    "request": {
      "header": "1500000017000000d31fccfc1900000000000000",
      "body": "ef9fe81804fd800c0b800cff00025e62010764656661756c74"
    },
    "response": {
      "header": "15000000170000001200000000000000",
      "body": "ff8133b80487030100010100000000000000"
    }
  },
  {
    "title": "RemoveAll",
    "request": {
      "header": "150000001a000000b0ce78d91400000000000000",
      "body": "75c2a64804fd0b800cff00010764656661756c74"
    },
    "response": {
      "header": "150000001a0000000f00000000000000",
      "body": "35686686040300aa0f000000000000"
    }
  },
  {
    "title": "ExistKey with a 300-character key (all length prefixes become 2 bytes)",
    "request": {
      "header": "1500000001000000095f38894301000000000000",
      "truncated": true
    },
    "response": {
      "header": "15000000010000000b00000000000000",
      "body": "d300e89004870b01000100"
    }
  },
  {
    "title": "BatchExistKey with 260 keys (request and response both use 2-byte lengths)",
    "request": {
      "header": "1500000002000000b0a69fb8c205000000000000",
      "truncated": true
    },
    "response": {
      "header": "15000000020000001402000000000000",
      "truncated": true
    }
  }
];
