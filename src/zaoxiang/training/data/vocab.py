"""COMMON_VOCAB: the fixed ~300 everyday objects used for compositions and by the evaluation classifier.

Generated once by ``zaoxiang data vocab`` (concepts.select_common_vocab over the catalogue of the
pinned asset versions) and frozen here, so importing it needs no assets and the list never drifts.
The rule: a fixed quota per category (concepts.COMMON_QUOTAS: animal 70, food 70, object 55,
vehicle 30, plant 20, nature 20, activity 20, place 10, face 5); within a category only concepts
drawable in all three styles, ranked by emoji version (older = more everyday), then by the number
of words in the English name (simplest first), then Unicode order. tests/test_data_catalogue.py
checks that the rule still reproduces this list.
"""

from __future__ import annotations

COMMON_VOCAB: tuple[str, ...] = (
    "1f480",  # skull / 头骨
    "1f479",  # ogre / 食人魔
    "1f47a",  # goblin / 小妖精
    "1f47b",  # ghost / 鬼
    "1f47d",  # alien / 外星人
    "1f435",  # monkey face / 猴头
    "1f412",  # monkey / 猴子
    "1f436",  # dog face / 狗脸
    "1f415",  # dog / 狗
    "1f429",  # poodle / 贵宾犬
    "1f43a",  # wolf / 狼
    "1f431",  # cat face / 猫脸
    "1f408",  # cat / 猫
    "1f981",  # lion / 狮子
    "1f42f",  # tiger face / 老虎头
    "1f405",  # tiger / 老虎
    "1f406",  # leopard / 豹子
    "1f434",  # horse face / 马头
    "1f40e",  # horse / 马
    "1f984",  # unicorn / 独角兽
    "1f42e",  # cow face / 奶牛头
    "1f402",  # ox / 公牛
    "1f404",  # cow / 奶牛
    "1f437",  # pig face / 猪头
    "1f416",  # pig / 猪
    "1f417",  # boar / 野猪
    "1f43d",  # pig nose / 猪鼻子
    "1f40f",  # ram / 公羊
    "1f411",  # ewe / 母羊
    "1f410",  # goat / 山羊
    "1f42a",  # camel / 骆驼
    "1f42b",  # two-hump camel / 双峰骆驼
    "1f418",  # elephant / 大象
    "1f42d",  # mouse face / 老鼠头
    "1f401",  # mouse / 老鼠
    "1f400",  # rat / 耗子
    "1f439",  # hamster / 仓鼠
    "1f430",  # rabbit face / 兔子头
    "1f407",  # rabbit / 兔子
    "1f43f",  # chipmunk / 松鼠
    "1f43b",  # bear / 熊
    "1f428",  # koala / 考拉
    "1f43c",  # panda / 熊猫
    "1f983",  # turkey / 火鸡
    "1f414",  # chicken / 鸡
    "1f413",  # rooster / 公鸡
    "1f423",  # hatching chick / 小鸡破壳
    "1f424",  # baby chick / 小鸡
    "1f425",  # front-facing baby chick / 正面朝向的小鸡
    "1f426",  # bird / 鸟
    "1f427",  # penguin / 企鹅
    "1f54a",  # dove / 鸽
    "1f438",  # frog / 青蛙
    "1f40a",  # crocodile / 鳄鱼
    "1f422",  # turtle / 龟
    "1f40d",  # snake / 蛇
    "1f432",  # dragon face / 龙头
    "1f409",  # dragon / 龙
    "1f433",  # spouting whale / 喷水的鲸
    "1f40b",  # whale / 鲸鱼
    "1f42c",  # dolphin / 海豚
    "1f41f",  # fish / 鱼
    "1f420",  # tropical fish / 热带鱼
    "1f421",  # blowfish / 河豚
    "1f419",  # octopus / 章鱼
    "1f41a",  # spiral shell / 海螺
    "1f980",  # crab / 蟹
    "1f40c",  # snail / 蜗牛
    "1f41b",  # bug / 毛毛虫
    "1f41c",  # ant / 蚂蚁
    "1f41d",  # honeybee / 蜜蜂
    "1f41e",  # lady beetle / 瓢虫
    "1f577",  # spider / 蜘蛛
    "1f578",  # spider web / 蜘蛛网
    "1f982",  # scorpion / 蝎子
    "1f490",  # bouquet / 花束
    "1f338",  # cherry blossom / 樱花
    "1f4ae",  # white flower / 白花
    "1f3f5",  # rosette / 圆形花饰
    "1f339",  # rose / 玫瑰
    "1f33a",  # hibiscus / 芙蓉
    "1f33b",  # sunflower / 向日葵
    "1f33c",  # blossom / 开花
    "1f337",  # tulip / 郁金香
    "1f331",  # seedling / 幼苗
    "1f334",  # palm tree / 棕榈树
    "1f335",  # cactus / 仙人掌
    "1f33e",  # sheaf of rice / 稻子
    "1f33f",  # herb / 药草
    "2618",  # shamrock / 三叶草
    "1f340",  # four leaf clover / 四叶草
    "1f341",  # maple leaf / 枫叶
    "1f342",  # fallen leaf / 落叶
    "1f343",  # leaf fluttering in wind / 风吹叶落
    "1f344",  # mushroom / 蘑菇
    "1f347",  # grapes / 葡萄
    "1f348",  # melon / 甜瓜
    "1f349",  # watermelon / 西瓜
    "1f34a",  # tangerine / 橘子
    "1f34b",  # lemon / 柠檬
    "1f34c",  # banana / 香蕉
    "1f34d",  # pineapple / 菠萝
    "1f34e",  # red apple / 红苹果
    "1f34f",  # green apple / 青苹果
    "1f350",  # pear / 梨
    "1f351",  # peach / 桃
    "1f352",  # cherries / 樱桃
    "1f353",  # strawberry / 草莓
    "1f345",  # tomato / 西红柿
    "1f346",  # eggplant / 茄子
    "1f33d",  # ear of corn / 玉米
    "1f336",  # hot pepper / 红辣椒
    "1f330",  # chestnut / 栗子
    "1f35e",  # bread / 面包
    "1f9c0",  # cheese wedge / 芝士
    "1f356",  # meat on bone / 排骨
    "1f357",  # poultry leg / 家禽的腿
    "1f354",  # hamburger / 汉堡
    "1f35f",  # french fries / 薯条
    "1f355",  # pizza / 披萨
    "1f32d",  # hot dog / 热狗
    "1f32e",  # taco / 墨西哥卷饼
    "1f32f",  # burrito / 墨西哥玉米煎饼
    "1f373",  # cooking / 煎蛋
    "1f372",  # pot of food / 一锅食物
    "1f37f",  # popcorn / 爆米花
    "1f371",  # bento box / 盒饭
    "1f358",  # rice cracker / 米饼
    "1f359",  # rice ball / 饭团
    "1f35a",  # cooked rice / 米饭
    "1f35b",  # curry rice / 咖喱饭
    "1f35c",  # steaming bowl / 面条
    "1f35d",  # spaghetti / 意粉
    "1f360",  # roasted sweet potato / 烤红薯
    "1f362",  # oden / 关东煮
    "1f363",  # sushi / 寿司
    "1f364",  # fried shrimp / 天妇罗
    "1f365",  # fish cake with swirl / 鱼板
    "1f361",  # dango / 团子
    "1f366",  # soft ice cream / 圆筒冰激凌
    "1f367",  # shaved ice / 刨冰
    "1f368",  # ice cream / 冰淇淋
    "1f369",  # doughnut / 甜甜圈
    "1f36a",  # cookie / 饼干
    "1f382",  # birthday cake / 生日蛋糕
    "1f370",  # shortcake / 水果蛋糕
    "1f36b",  # chocolate bar / 巧克力
    "1f36c",  # candy / 糖
    "1f36d",  # lollipop / 棒棒糖
    "1f36e",  # custard / 奶黄
    "1f36f",  # honey pot / 蜂蜜
    "1f37c",  # baby bottle / 奶瓶
    "2615",  # hot beverage / 热饮
    "1f375",  # teacup without handle / 热茶
    "1f376",  # sake / 清酒
    "1f37e",  # bottle with popping cork / 开香槟
    "1f377",  # wine glass / 葡萄酒
    "1f378",  # cocktail glass / 鸡尾酒
    "1f379",  # tropical drink / 热带水果饮料
    "1f37a",  # beer mug / 啤酒
    "1f37b",  # clinking beer mugs / 干杯
    "1f37d",  # fork and knife with plate / 餐具
    "1f374",  # fork and knife / 刀叉
    "1f52a",  # kitchen knife / 菜刀
    "1f3fa",  # amphora / 双耳瓶
    "1f30b",  # volcano / 火山
    "1f3e0",  # house / 房子
    "1f3e5",  # hospital / 医院
    "1f3e6",  # bank / 银行
    "1f3e8",  # hotel / 酒店
    "1f3eb",  # school / 学校
    "1f3ed",  # factory / 工厂
    "1f3f0",  # castle / 欧洲城堡
    "1f492",  # wedding / 婚礼
    "26ea",  # church / 教堂
    "1f682",  # locomotive / 蒸汽火车
    "1f683",  # railway car / 轨道车
    "1f684",  # high-speed train / 高速列车
    "1f685",  # bullet train / 子弹头高速列车
    "1f687",  # metro / 地铁
    "1f689",  # station / 车站
    "1f68c",  # bus / 公交车
    "1f68d",  # oncoming bus / 迎面驶来的公交车
    "1f691",  # ambulance / 救护车
    "1f692",  # fire engine / 消防车
    "1f693",  # police car / 警车
    "1f694",  # oncoming police car / 迎面驶来的警车
    "1f695",  # taxi / 出租车
    "1f697",  # automobile / 汽车
    "1f698",  # oncoming automobile / 迎面驶来的汽车
    "1f699",  # sport utility vehicle / 运动型多用途车
    "1f69a",  # delivery truck / 货车
    "1f3ce",  # racing car / 赛车
    "1f3cd",  # motorcycle / 摩托车
    "1f6b2",  # bicycle / 自行车
    "1f6a7",  # construction / 路障
    "2693",  # anchor / 锚
    "26f5",  # sailboat / 帆船
    "1f6a4",  # speedboat / 快艇
    "1f6f3",  # passenger ship / 客轮
    "26f4",  # ferry / 渡轮
    "1f6e5",  # motor boat / 摩托艇
    "1f6a2",  # ship / 船
    "2708",  # airplane / 飞机
    "1f6e9",  # small airplane / 小型飞机
    "1f4ba",  # seat / 座位
    "1f6f0",  # satellite / 卫星
    "1f680",  # rocket / 火箭
    "231a",  # watch / 手表
    "1f311",  # new moon / 朔月
    "1f313",  # first quarter moon / 上弦月
    "1f314",  # waxing gibbous moon / 盈凸月
    "1f315",  # full moon / 满月
    "1f319",  # crescent moon / 弯月
    "2600",  # sun / 太阳
    "2b50",  # star / 星星
    "1f31f",  # glowing star / 闪亮的星星
    "1f320",  # shooting star / 流星
    "1f30c",  # milky way / 银河
    "2601",  # cloud / 云
    "26c5",  # sun behind cloud / 阴
    "1f300",  # cyclone / 台风
    "1f308",  # rainbow / 彩虹
    "1f302",  # closed umbrella / 收起的伞
    "26a1",  # high voltage / 高压
    "2744",  # snowflake / 雪花
    "1f525",  # fire / 火焰
    "1f4a7",  # droplet / 水滴
    "1f30a",  # water wave / 浪花
    "1f383",  # jack-o-lantern / 南瓜灯
    "1f384",  # Christmas tree / 圣诞树
    "1f386",  # fireworks / 焰火
    "1f387",  # sparkler / 烟花
    "2728",  # sparkles / 闪亮
    "1f388",  # balloon / 气球
    "1f389",  # party popper / 拉炮彩带
    "1f38a",  # confetti ball / 五彩纸屑球
    "1f38b",  # tanabata tree / 七夕树
    "1f38d",  # pine decoration / 门松
    "1f380",  # ribbon / 蝴蝶结
    "1f3ab",  # ticket / 票
    "1f3c6",  # trophy / 奖杯
    "26be",  # baseball / 棒球
    "1f3c0",  # basketball / 篮球
    "1f3be",  # tennis / 网球
    "1f3b3",  # bowling / 保龄球
    "1f3bf",  # skis / 滑雪
    "1f3af",  # bullseye / 正中靶心的飞镖
    "1f0cf",  # joker / 大小王
    "1f453",  # glasses / 眼镜
    "1f454",  # necktie / 领带
    "1f455",  # t-shirt / T恤
    "1f456",  # jeans / 牛仔裤
    "1f457",  # dress / 连衣裙
    "1f458",  # kimono / 和服
    "1f459",  # bikini / 比基尼
    "1f45b",  # purse / 钱包
    "1f45c",  # handbag / 手提包
    "1f392",  # backpack / 书包
    "1f451",  # crown / 皇冠
    "1f484",  # lipstick / 唇膏
    "1f48d",  # ring / 戒指
    "1f4e2",  # loudspeaker / 喇叭
    "1f4e3",  # megaphone / 扩音器
    "1f514",  # bell / 铃铛
    "1f3a4",  # microphone / 麦克风
    "1f3a7",  # headphone / 耳机
    "1f4fb",  # radio / 收音机
    "1f3b7",  # saxophone / 萨克斯管
    "1f3ba",  # trumpet / 小号
    "1f3b8",  # guitar / 吉他
    "1f3bb",  # violin / 小提琴
    "260e",  # telephone / 电话
    "1f4df",  # pager / 寻呼机
    "1f50b",  # battery / 电池
    "1f4bb",  # laptop / 笔记本电脑
    "1f4c0",  # dvd / DVD
    "1f4fa",  # television / 电视机
    "1f4f7",  # camera / 相机
    "1f4fc",  # videocassette / 录像带
    "1f526",  # flashlight / 手电筒
    "1f4da",  # books / 书
    "1f4d3",  # notebook / 笔记本
    "1f4d2",  # ledger / 账本
    "1f4dc",  # scroll / 卷轴
    "1f4f0",  # newspaper / 报纸
    "1f516",  # bookmark / 书签
    "2709",  # envelope / 信封
    "1f4e7",  # e-mail / 电子邮件
    "1f4e6",  # package / 包裹
    "1f4ee",  # postbox / 邮筒
    "270f",  # pencil / 铅笔
    "1f4dd",  # memo / 备忘录
    "1f4bc",  # briefcase / 公文包
    "1f4c5",  # calendar / 日历
    "1f4cb",  # clipboard / 剪贴板
    "1f4cc",  # pushpin / 图钉
    "1f4ce",  # paperclip / 回形针
    "2702",  # scissors / 剪刀
    "1f512",  # locked / 合上的锁
)
