-- benches/haplo/flood.lua: wrong secrets for imported (bcrypt, never used)
-- key ids, from 1,000 client addresses simulated with X-Forwarded-For
-- (keygate must have proxy.trusted_proxies = ["127.0.0.1"]). Used by
-- benches/haplo.sh (flood step); by hand:
--
--   FLOOD_FROM=1001 FLOOD_TO=10000 wrk -t1 -c64 -d12s -s benches/haplo/flood.lua http://127.0.0.1:PORT/api/flood
--
-- Ids are bulk000000001001..bulk000000010000 (tests/support/haplo.rs
-- bulk_keys naming); the secret is 28 'X's, never the right one. The XFF
-- addresses are 198.18.0.1..198.18.3.250 (benchmark range, only header
-- text: nothing is sent there). At the end it prints how many answers were
-- 403 INVALID-API-KEY, 403 THROTTLE, 503 TEMPORARILY-UNAVAILABLE, other.

local b64chars = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
local function b64(data)
  return ((data:gsub(".", function(x)
    local r, b = "", x:byte()
    for i = 8, 1, -1 do r = r .. (b % 2 ^ i - b % 2 ^ (i - 1) > 0 and "1" or "0") end
    return r
  end) .. "0000"):gsub("%d%d%d?%d?%d?%d?", function(x)
    if #x < 6 then return "" end
    local c = 0
    for i = 1, 6 do c = c + (x:sub(i, i) == "1" and 2 ^ (6 - i) or 0) end
    return b64chars:sub(c + 1, c + 1)
  end) .. ({ "", "==", "=" })[#data % 3 + 1])
end

local from = tonumber(os.getenv("FLOOD_FROM") or "1001")
local to = tonumber(os.getenv("FLOOD_TO") or "10000")
local naddr = tonumber(os.getenv("FLOOD_ADDRS") or "1000")
local auths, addrs = {}, {}
local n = 0
counts = {}

function init(args)
  local wrong = string.rep("X", 28)
  for i = from, to do
    auths[#auths + 1] = "Basic " .. b64("haplo:" .. string.format("bulk%012d", i) .. wrong)
  end
  for i = 0, naddr - 1 do
    addrs[#addrs + 1] = string.format("198.18.%d.%d", math.floor(i / 250), i % 250 + 1)
  end
end

function request()
  n = n + 1
  return wrk.format("GET", "/api/flood", {
    ["X-Forwarded-For"] = addrs[(n % #addrs) + 1],
    ["Authorization"] = auths[(n % #auths) + 1],
  })
end

function response(status, headers, body)
  local k = tostring(status)
  if status == 403 then
    if body:find("THROTTLE", 1, true) then k = "403 THROTTLE"
    elseif body:find("INVALID-API-KEY", 1, true) then k = "403 INVALID-API-KEY"
    else k = "403 other" end
  elseif status == 503 then
    if body:find("TEMPORARILY-UNAVAILABLE", 1, true) then k = "503 TEMPORARILY-UNAVAILABLE" end
  end
  counts[k] = (counts[k] or 0) + 1
end

local threads = {}
function setup(thread) threads[#threads + 1] = thread end

function done(summary, latency, requests)
  local total = {}
  for _, t in ipairs(threads) do
    for k, v in pairs(t:get("counts")) do total[k] = (total[k] or 0) + v end
  end
  for k, v in pairs(total) do io.write(string.format("FLOODCOUNT\t%s\t%d\n", k, v)) end
end
