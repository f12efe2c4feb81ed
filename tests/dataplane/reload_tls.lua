-- Wireshark registers RELOAD framing on TCP and DTLS but not inside TLS.  This
-- small dissector sits on the TLS ports listed in VIPR_RELOAD_TLS_PORTS
-- (space-separated), splits the decrypted stream into RELOAD frames (several
-- may share a TLS record, one may span records) and hands each frame to
-- Wireshark's reload-framing dissector:
--   VIPR_RELOAD_TLS_PORTS=6084 tshark -X lua_script:reload_tls.lua \
--     -o tls.keylog_file:KEYLOG -d tcp.port==6084,tls -r capture.pcapng
local proto = Proto("reload_tls", "RELOAD framing over TLS")
local framing = Dissector.get("reload-framing")

function proto.dissector(tvb, pinfo, tree)
  local off, len = 0, tvb:len()
  while off < len do
    local t = tvb(off, 1):uint()
    local need
    if t == 128 then
      if len - off < 8 then
        pinfo.desegment_offset = off
        pinfo.desegment_len = DESEGMENT_ONE_MORE_SEGMENT
        return len
      end
      need = 8 + tvb(off + 5, 3):uint()
    elseif t == 129 then
      need = 9
    else
      return off -- not a frame: leave the rest to "data"
    end
    if len - off < need then
      pinfo.desegment_offset = off
      pinfo.desegment_len = need - (len - off)
      return len
    end
    framing:call(tvb(off, need):tvb(), pinfo, tree)
    off = off + need
  end
  return off
end

local tls = DissectorTable.get("tls.port")
for port in string.gmatch(os.getenv("VIPR_RELOAD_TLS_PORTS") or "", "%d+") do
  tls:add(tonumber(port), proto)
end
